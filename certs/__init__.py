"""Gatehouse's certificate authority: the CA, the TLS server certificate, device
certificates issued from CSRs, and reading a client certificate's identity."""

from certs.authority import (
    CertificateAuthority,
    CertificateError,
    Issued,
    PeerCertificate,
    make_key_and_csr,
    read_peer_certificate,
)

__all__ = [
    "CertificateAuthority",
    "CertificateError",
    "Issued",
    "PeerCertificate",
    "make_key_and_csr",
    "read_peer_certificate",
]
