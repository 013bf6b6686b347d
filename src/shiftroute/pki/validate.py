"""Extended validation of a route's TLS material, as OpenShift's router does it before admitting a route
(reason `ExtendedValidationFailed`, routes.md §3).

Checks: every PEM block parses; the key matches the certificate; with a caCertificate, the certificate
chains to it (hostname and expiry are not checked here); CA-signed certificates signed with SHA-1, MD5 or
MD2 are refused; destinationCACertificate parses. Messages name the field, never the material.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography import x509

from shiftroute.api.objects import RouteTLS
from shiftroute.errors import FieldError, PKIError
from shiftroute.pki.pem import (
    is_self_signed,
    is_signed_by,
    load_certificates,
    load_private_key,
    public_bytes_of_cert,
    public_bytes_of_key,
    signature_hash_name,
)

_WEAK_HASHES = {"sha1", "md5", "md2"}


def validate_route_tls(tls: RouteTLS) -> list[FieldError]:
    # Same material, same answer: cache by content so a resync of 10 000 routes parses each PEM once.
    return list(
        _validate(
            tls.termination, tls.certificate, tls.key, tls.ca_certificate, tls.destination_ca_certificate
        )
    )


@lru_cache(maxsize=8192)
def _validate(
    termination: str, cert_pem: str, key_pem: str, ca_pem: str, dest_ca_pem: str
) -> tuple[FieldError, ...]:
    errors: list[FieldError] = []
    if termination in ("edge", "reencrypt"):
        errors.extend(_validate_serving(cert_pem, key_pem, ca_pem))
    if termination == "reencrypt" and dest_ca_pem:
        try:
            load_certificates(dest_ca_pem, "spec.tls.destinationCACertificate")
        except PKIError as exc:
            errors.append(FieldError("spec.tls.destinationCACertificate", _reason(exc)))
    return tuple(errors)


def _reason(exc: PKIError) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


def _validate_serving(cert_pem: str, key_pem: str, ca_pem: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not cert_pem and not key_pem:
        if ca_pem:
            errors.append(FieldError("spec.tls.caCertificate", "given without spec.tls.certificate"))
        return errors
    if not cert_pem:
        return [FieldError("spec.tls.certificate", "required when spec.tls.key is given")]
    if not key_pem:
        return [FieldError("spec.tls.key", "required when spec.tls.certificate is given")]
    certs: list[x509.Certificate] = []
    try:
        certs = load_certificates(cert_pem, "spec.tls.certificate")
    except PKIError as exc:
        errors.append(FieldError("spec.tls.certificate", _reason(exc)))
    try:
        key = load_private_key(key_pem, "spec.tls.key")
    except PKIError as exc:
        errors.append(FieldError("spec.tls.key", _reason(exc)))
        key = None
    cas: list[x509.Certificate] = []
    if ca_pem:
        try:
            cas = load_certificates(ca_pem, "spec.tls.caCertificate")
        except PKIError as exc:
            errors.append(FieldError("spec.tls.caCertificate", _reason(exc)))
    if not certs:
        return errors
    leaf = certs[0]
    if key is not None and public_bytes_of_key(key) != public_bytes_of_cert(leaf):
        errors.append(FieldError("spec.tls.key", "does not match the public key of spec.tls.certificate"))
    errors.extend(_check_signatures(certs + cas))
    if cas and not _chains_to(leaf, certs[1:], cas):
        errors.append(
            FieldError("spec.tls.certificate", "is not signed by spec.tls.caCertificate (or a chain to it)")
        )
    return errors


def _check_signatures(certs: list[x509.Certificate]) -> list[FieldError]:
    """OpenShift refuses CA-signed certificates with SHA-1, MD5 or MD2 signatures; self-signed roots are
    exempt because their signature is never checked by a client."""
    errors = []
    for cert in certs:
        name = signature_hash_name(cert)
        if name in _WEAK_HASHES and not is_self_signed(cert):
            subject = cert.subject.rfc4514_string() or "(empty subject)"
            errors.append(
                FieldError(
                    "spec.tls.certificate",
                    f"certificate {subject} is signed with {name.upper()}, which is refused",
                )
            )
    return errors


def _chains_to(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], cas: list[x509.Certificate], depth: int = 8
) -> bool:
    """True when signatures lead from `leaf`, through the bundle's intermediates, to one of `cas`."""
    current = leaf
    for _ in range(depth):
        if any(is_signed_by(current, ca) for ca in cas):
            return True
        issuer = next((c for c in intermediates if c is not current and is_signed_by(current, c)), None)
        if issuer is None:
            return False
        current = issuer
    return False
