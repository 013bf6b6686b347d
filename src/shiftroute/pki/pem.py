"""Reading PEM bundles. Errors name what is wrong, never quote the PEM (hardening.md rule 24)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from shiftroute.errors import PKIError

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


def pem_blocks(text: str) -> list[tuple[str, str]]:
    """(label, whole block) for every PEM block in `text`."""
    return [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(text)]


def load_certificates(text: str, what: str = "certificate") -> list[x509.Certificate]:
    """Every CERTIFICATE block in `text`; PKIError when there is none or one does not parse."""
    blocks = [block for label, block in pem_blocks(text) if label in ("CERTIFICATE", "TRUSTED CERTIFICATE")]
    if not blocks:
        raise PKIError(f"{what}: not a PEM certificate (no '-----BEGIN CERTIFICATE-----' block)")
    certs = []
    for index, block in enumerate(blocks, start=1):
        try:
            certs.append(x509.load_pem_x509_certificate(block.encode()))
        except ValueError:
            raise PKIError(f"{what}: PEM block {index} is not a valid X.509 certificate") from None
    return certs


def load_private_key(text: str, what: str = "key") -> PrivateKeyTypes:
    blocks = [block for label, block in pem_blocks(text) if label.endswith("PRIVATE KEY")]
    if not blocks:
        raise PKIError(f"{what}: not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' block)")
    if len(blocks) > 1:
        raise PKIError(f"{what}: holds {len(blocks)} private keys; give exactly one")
    try:
        return serialization.load_pem_private_key(blocks[0].encode(), password=None)
    except TypeError:
        raise PKIError(f"{what}: the private key is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise PKIError(f"{what}: the private key does not parse") from None


def public_bytes_of_key(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_bytes_of_cert(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def is_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer` signed `cert` (names match and the signature verifies)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError:
        # cryptography refuses to verify SHA-1 and MD5 signatures ("Unsupported signature algorithm");
        # check them with the issuer's key directly, so such a certificate is refused as weak (or
        # exempted as self-signed) instead of being reported as not signed at all.
        return _verify_weak_signature(cert, issuer)
    except (TypeError, InvalidSignature):
        return False
    return True


def _verify_weak_signature(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        algorithm = cert.signature_hash_algorithm
        key = issuer.public_key()
        if algorithm is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def signature_hash_name(cert: x509.Certificate) -> str:
    """`sha256`, `sha1`, `md5`...; `md2` or `unknown` where cryptography has no hash object for it (MD2),
    so an odd certificate is refused with a reason instead of crashing admission."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        oid_name = getattr(cert.signature_algorithm_oid, "_name", "") or ""
        return "md2" if "md2" in oid_name.lower() else "unknown"
    return algorithm.name if algorithm is not None else "none"


def is_self_signed(cert: x509.Certificate) -> bool:
    return is_signed_by(cert, cert)


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in ext.value.get_values_for_type(x509.DNSName)]


def ip_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in ext.value.get_values_for_type(x509.IPAddress)]


def fingerprint_sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


@dataclass(frozen=True, slots=True)
class CertSummary:
    """What `describe`, `pki inspect` and `diagnose` show of a certificate (never the key)."""

    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    serial: str
    key_type: str
    signature_hash: str
    fingerprint: str
    is_ca: bool
    version: int

    def expires_in_days(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return (self.not_after - now).total_seconds() / 86400

    def validity_problem(self, now: datetime | None = None, warn_days: int = 30) -> str | None:
        now = now or datetime.now(UTC)
        if now < self.not_before:
            return f"not valid before {self.not_before:%Y-%m-%d %H:%M:%SZ}"
        if now > self.not_after:
            return f"expired on {self.not_after:%Y-%m-%d %H:%M:%SZ}"
        if self.expires_in_days(now) < warn_days:
            return f"expires in {self.expires_in_days(now):.0f} days ({self.not_after:%Y-%m-%d})"
        return None


def key_type_of(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ECDSA {public_key.curve.name}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(public_key, dsa.DSAPublicKey):
        return f"DSA {public_key.key_size}"
    return type(public_key).__name__


def summarize(cert: x509.Certificate) -> CertSummary:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        basic = False
    sans = tuple([f"DNS:{n}" for n in dns_names(cert)] + [f"IP:{n}" for n in ip_sans(cert)])
    return CertSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=sans,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=format(cert.serial_number, "x"),
        key_type=key_type_of(cert.public_key()),
        signature_hash=signature_hash_name(cert),
        fingerprint=fingerprint_sha256(cert),
        is_ca=bool(basic),
        version=cert.version.value + 1,
    )
