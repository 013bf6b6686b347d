"""TLS contexts: the client-facing profiles (hardening.md rule 1) and the backend contexts of reencrypt
routes (rule 2). Built at compile time and shared: the same PEM gives the same context object."""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import tempfile
from functools import lru_cache
from pathlib import Path

from shiftroute.errors import PKIError

# Mozilla's server-side TLS recommendations (https://wiki.mozilla.org/Security/Server_Side_TLS, v5.7).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
OLD_CIPHERS = (
    INTERMEDIATE_CIPHERS + ":ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:"
    "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA:"
    "ECDHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA256:DHE-RSA-AES256-SHA256:AES128-GCM-SHA256:AES256-GCM-SHA384:"
    "AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA:DES-CBC3-SHA@SECLEVEL=0"
)
TLS_PROFILES = ("old", "intermediate", "modern")


def _key_dir() -> Path:
    """Where PEM keys pass for the instant `load_cert_chain` needs a file: memory-backed when possible."""
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp below makes a private 0700 directory in it
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def apply_profile(ctx: ssl.SSLContext, profile: str) -> None:
    """hardening.md rule 1: intermediate (TLS 1.2+) by default; old (TLS 1.1+, security level 0);
    modern (TLS 1.3 only)."""
    if profile == "modern":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    elif profile == "old":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers(OLD_CIPHERS)
    elif profile == "intermediate":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    else:
        raise PKIError(f"--tls-profile {profile}: choose one of {', '.join(TLS_PROFILES)}")
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # No renegotiation from clients (a CPU-exhaustion vector); TLS 1.3 has none anyway.
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)


def server_context(
    cert_pem: str, key_pem: str, chain_pem: str = "", profile: str = "intermediate"
) -> ssl.SSLContext:
    """A serving context from PEM text. The key goes through a 0600 file that is removed at once."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    apply_profile(ctx, profile)
    ctx.set_alpn_protocols(["http/1.1"])
    directory = tempfile.mkdtemp(prefix="shiftroute-", dir=_key_dir())
    cert_path = os.path.join(directory, "tls.crt")
    key_path = os.path.join(directory, "tls.key")
    try:
        with open(os.open(cert_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(cert_pem.strip() + "\n" + (chain_pem.strip() + "\n" if chain_pem else ""))
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        raise PKIError(f"certificate and key cannot be loaded: {exc.reason or exc}") from None
    finally:
        for path in (cert_path, key_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.rmdir(directory)
    return ctx


def cached_server_context(cert_pem: str, key_pem: str, chain_pem: str, profile: str) -> ssl.SSLContext:
    return _cached_server_context(cert_pem, key_pem, chain_pem, profile)


@lru_cache(maxsize=4096)
def _cached_server_context(cert_pem: str, key_pem: str, chain_pem: str, profile: str) -> ssl.SSLContext:
    return server_context(cert_pem, key_pem, chain_pem, profile)


def backend_context(ca_pem: str, verify_hostname: bool) -> ssl.SSLContext:
    """hardening.md rule 2: CERT_REQUIRED always. With a destinationCACertificate the chain is verified
    but not the hostname (routes.md §4: the seed's backend certificate names no service); with the service
    CA the hostname `<svc>.<ns>.svc` is checked against SANs only, never the CN."""
    return _backend_context(hashlib.sha256(ca_pem.encode()).hexdigest(), ca_pem, verify_hostname)


@lru_cache(maxsize=4096)
def _backend_context(_digest: str, ca_pem: str, verify_hostname: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = verify_hostname
    ctx.hostname_checks_common_name = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_verify_locations(cadata=ca_pem)
    except ssl.SSLError as exc:
        raise PKIError(f"CA bundle cannot be loaded: {exc.reason or exc}") from None
    return ctx


def insecure_backend_context() -> ssl.SSLContext:
    """Only with --insecure-skip-backend-verify: the operator asked for no verification, explicitly."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
