"""A local certificate authority: its own key and certificate, the server certificate
for gatehouse's TLS listener, and device certificates issued from CSRs.

A device certificate binds the device's identity twice: the subject (O = ProductKey,
CN = DeviceKey) and a URI SAN `urn:gatehouse:device:{ProductKey}:{DeviceKey}`, which
is what admission reads. Keys are EC P-256; private keys are written mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
CA_DAYS = 3650
SERVER_DAYS = 825
URI_PREFIX = "urn:gatehouse:device:"
# The device keys the platforms take: EnOS's CSR guide names RSA 2048 and EC prime256v1
# (P-256); P-384 and RSA up to 4096 bits are what public CAs and AWS IoT also accept.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
KEY_RULE = (
    f"the key must be RSA of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits or EC on"
    f" {' or '.join(EC_CURVES.values())}"
)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CertificateError(ValueError):
    """A CSR or certificate gatehouse will not accept; the message says why."""


@dataclass(frozen=True, slots=True)
class Issued:
    cert_pem: str
    serial: str  # hex, upper case, as EnOS shows a certSN
    not_before: int  # ms
    not_after: int  # ms


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)


def serial_of(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "X")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError("the CA key must be an EC or RSA private key")
    return key


class CertificateAuthority:
    def __init__(self, key: PrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @classmethod
    def load_or_create(
        cls, directory: Path, *, cert_file: Path | None = None, key_file: Path | None = None
    ) -> CertificateAuthority:
        """The CA given (`cert_file`, `key_file`), else the one in `directory`, else a new one."""
        if cert_file is not None and key_file is not None:
            try:
                cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
                key = _load_key(key_file.read_bytes())
            except (OSError, ValueError) as exc:
                raise CertificateError(
                    f"cannot load the CA from {cert_file}, {key_file}: {exc}"
                ) from None
            return cls(key, cert)
        cert_path, key_path = directory / CA_CERT, directory / CA_KEY
        if cert_path.exists() and key_path.exists():
            return cls(
                _load_key(key_path.read_bytes()),
                x509.load_pem_x509_certificate(cert_path.read_bytes()),
            )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gatehouse local CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert)

    def server_files(self, directory: Path, hosts: list[str]) -> tuple[Path, Path]:
        """The TLS listener's certificate and key, made (again) when missing or not ours."""
        cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
        if cert_path.exists() and key_path.exists():
            current = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if current.issuer == self.cert.subject and current.not_valid_after_utc > _now():
                return cert_path, key_path
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        for host in dict.fromkeys(["127.0.0.1", "::1", *hosts]):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = _now()
        cert = (
            self._builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatehouse")]), key.public_key()
            )
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    def _builder(self, subject: x509.Name, public_key: object) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )

    def issue(
        self,
        csr_pem: str,
        product_key: str,
        device_key: str,
        valid_days: int,
        *,
        not_before: datetime.datetime | None = None,
    ) -> Issued:
        """A device certificate for the CSR's public key (its subject is replaced)."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError:
            raise CertificateError("csr is not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise CertificateError("the CSR's signature does not verify")
        return self.issue_for_key(
            csr.public_key(), product_key, device_key, valid_days, not_before=not_before
        )

    def renew(self, cert_pem: str, product_key: str, device_key: str, valid_days: int) -> Issued:
        """A new certificate for the same key and identity as `cert_pem`."""
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        return self.issue_for_key(cert.public_key(), product_key, device_key, valid_days)

    def issue_for_key(
        self,
        public_key: object,
        product_key: str,
        device_key: str,
        valid_days: int,
        *,
        not_before: datetime.datetime | None = None,
    ) -> Issued:
        check_device_key(public_key)
        start = not_before or _now() - datetime.timedelta(minutes=5)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, product_key),
                x509.NameAttribute(NameOID.COMMON_NAME, device_key),
            ]
        )
        cert = (
            self._builder(subject, public_key)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=valid_days))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"{URI_PREFIX}{product_key}:{device_key}")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(
            cert.public_bytes(serialization.Encoding.PEM).decode(),
            serial_of(cert),
            _ms(cert.not_valid_before_utc),
            _ms(cert.not_valid_after_utc),
        )

    def issued_by_me(self, cert: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def check_device_key(public_key: object) -> None:
    """Refuse a key the platforms would not certify (a P-192 or RSA-1024 key, say)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= public_key.key_size <= MAX_RSA_BITS:
            raise CertificateError(f"{KEY_RULE}, not RSA of {public_key.key_size} bits")
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in EC_CURVES:
            raise CertificateError(f"{KEY_RULE}, not EC on {public_key.curve.name}")
    else:
        raise CertificateError(f"{KEY_RULE}, not {type(public_key).__name__}")


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What admission needs of a client certificate."""

    serial: str
    product_key: str | None
    device_key: str | None
    not_after: int  # ms


def read_peer_certificate(der: bytes) -> PeerCertificate:
    cert = x509.load_der_x509_certificate(der)
    product_key = device_key = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(URI_PREFIX):
                product_key, _, device_key = uri[len(URI_PREFIX) :].partition(":")
    except x509.ExtensionNotFound:
        pass
    return PeerCertificate(serial_of(cert), product_key, device_key, _ms(cert.not_valid_after_utc))


def make_key_and_csr(product_key: str, device_key: str) -> tuple[str, str]:
    """A new EC key and a CSR for it (PEM), for a simulator or a first device."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, product_key),
                    x509.NameAttribute(NameOID.COMMON_NAME, device_key),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key).decode(), csr.public_bytes(serialization.Encoding.PEM).decode()
