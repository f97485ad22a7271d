"""The certificate authority as pure logic: identities in certificates, CSR checks,
key files and their modes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from certs import CertificateAuthority, CertificateError, make_key_and_csr, read_peer_certificate


def der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def test_a_device_certificate_binds_the_device(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    _, csr = make_key_and_csr("someone", "else")  # the CSR's subject is not trusted
    issued = ca.issue(csr, "pk1", "dk1", 30)
    peer = read_peer_certificate(der(issued.cert_pem))
    assert (peer.product_key, peer.device_key, peer.serial) == ("pk1", "dk1", issued.serial)
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dk1"
    assert ca.issued_by_me(cert)
    assert issued.not_after - issued.not_before == 30 * 86_400_000


def test_the_ca_is_made_once_and_its_keys_are_private(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path)
    again = CertificateAuthority.load_or_create(tmp_path)
    assert first.cert == again.cert
    server_cert, server_key = first.server_files(tmp_path, ["127.0.0.1", "gatehouse.local"])
    for key in (tmp_path / "ca.key", server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gatehouse.local" in names.get_values_for_type(x509.DNSName)
    assert first.server_files(tmp_path, []) == (server_cert, server_key)  # kept while valid
    stranger = CertificateAuthority.load_or_create(tmp_path / "other")
    assert not stranger.issued_by_me(cert)


def test_bad_csrs_are_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    with pytest.raises(CertificateError, match="not a PEM"):
        ca.issue("hello", "pk", "dk", 1)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(weak, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    with pytest.raises(CertificateError, match="2048"):
        ca.issue(csr, "pk", "dk", 1)


def test_a_ca_given_in_configuration_is_used(tmp_path: Path) -> None:
    mine = CertificateAuthority.load_or_create(tmp_path / "mine")
    used = CertificateAuthority.load_or_create(
        tmp_path / "data",
        cert_file=tmp_path / "mine" / "ca.pem",
        key_file=tmp_path / "mine" / "ca.key",
    )
    assert used.cert == mine.cert
    with pytest.raises(CertificateError, match="cannot load"):
        CertificateAuthority.load_or_create(
            tmp_path / "data", cert_file=tmp_path / "missing.pem", key_file=tmp_path / "missing.key"
        )
