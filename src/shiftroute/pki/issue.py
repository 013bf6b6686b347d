"""Making CAs and certificates (`shiftroute pki`, the router's self-signed default, the demo).

Output files work with `openssl verify -CAfile NAME.crt leaf.crt`; keys are written mode 0600.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shiftroute.errors import PKIError
from shiftroute.pki.pem import load_certificates, load_private_key

KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")
# Backdate a little so a client whose clock is slightly behind still accepts a fresh certificate.
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()


def new_key(key_type: str) -> CertificateIssuerPrivateKeyTypes:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa-4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    raise PKIError(f"--key-type {key_type}: choose one of {', '.join(KEY_TYPES)}")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def parse_sans(text: str) -> list[x509.GeneralName]:
    """`DNS:a.example.com,IP:127.0.0.1` (openssl's subjectAltName syntax); a bare value is a DNS name."""
    names: list[x509.GeneralName] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        kind, sep, value = item.partition(":")
        if not sep:
            kind, value = "DNS", item
        if kind.upper() == "DNS" and value:
            names.append(x509.DNSName(value))
        elif kind.upper() == "IP":
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(value)))
            except ValueError:
                raise PKIError(f"--san {item}: not an IP address") from None
        else:
            raise PKIError(f"--san {item}: use DNS:name or IP:address")
    return names


def _builder(
    subject: x509.Name, issuer: x509.Name, key: CertificateIssuerPrivateKeyTypes, start: datetime, days: int
) -> x509.CertificateBuilder:
    """What every certificate made here starts with: names, public key, a random serial, validity."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
    )


def _key_usage(*, signs_certificates: bool, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(cn: str, days: int = 3650, key_type: str = "ecdsa-p256") -> Issued:
    key = new_key(key_type)
    cert = (
        _builder(_name(cn), _name(cn), key, datetime.now(UTC) - _CLOCK_SKEW, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_leaf(
    ca: Issued,
    cn: str,
    sans: list[x509.GeneralName],
    days: int = 825,
    key_type: str = "ecdsa-p256",
    not_before: datetime | None = None,
) -> Issued:
    """A server certificate signed by `ca`. With no SAN given, the CN becomes the only DNS SAN, because
    clients match hostnames against SANs only (RFC 6125 §6.4.4)."""
    key = new_key(key_type)
    if not sans and cn:
        sans = [x509.DNSName(cn)]
    builder = (
        _builder(_name(cn), ca.cert.subject, key, not_before or datetime.now(UTC) - _CLOCK_SKEW, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False, key_encipherment=isinstance(key, rsa.RSAPrivateKey)),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_self_signed(cn: str, sans: list[x509.GeneralName], days: int = 730) -> Issued:
    """A self-signed server certificate (the router's default when none is given)."""
    key = new_key("ecdsa-p256")
    cert = (
        _builder(_name(cn), _name(cn), key, datetime.now(UTC) - _CLOCK_SKEW, days)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def write_pair(issued: Issued, directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.crt (0644) and NAME.key (0600, created with that mode so it is never world-readable)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_text(issued.cert_pem())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(issued.key_pem())
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def read_pair(cert_path: Path, key_path: Path) -> Issued:
    """Load a CA (or any pair) from files; checks that the key belongs to the certificate."""
    try:
        cert_text = cert_path.read_text()
        key_text = key_path.read_text()
    except OSError as exc:
        raise PKIError(f"{exc.filename}: {exc.strerror}") from None
    cert = load_certificates(cert_text, str(cert_path))[0]
    key = load_private_key(key_text, str(key_path))
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PKIError(f"{key_path}: only RSA and ECDSA keys can sign certificates here")
    pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if pub != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise PKIError(f"{key_path}: does not match the public key of {cert_path}")
    return Issued(cert, key)
