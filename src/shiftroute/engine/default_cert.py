"""The router's default certificate (routes.md §4): the one given with --default-cert/--default-key, else
a self-signed `*.<domain>` certificate generated once and kept in the state directory (reused on restart,
re-read on SIGHUP)."""

from __future__ import annotations

import fcntl
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from shiftroute.errors import PKIError
from shiftroute.pki.issue import make_self_signed, write_pair
from shiftroute.pki.pem import load_certificates
from shiftroute.routing.contexts import server_context

log = logging.getLogger("shiftroute.engine")


@dataclass(frozen=True, slots=True)
class DefaultCertificate:
    cert_path: Path
    key_path: Path
    generated: bool

    def load(self, profile: str) -> tuple[ssl.SSLContext, datetime]:
        try:
            cert_pem = self.cert_path.read_text()
            key_pem = self.key_path.read_text()
        except OSError as exc:
            raise PKIError(f"default certificate: {exc.filename}: {exc.strerror}") from None
        certs = load_certificates(cert_pem, str(self.cert_path))
        context = server_context(cert_pem, key_pem, "", profile)
        return context, certs[0].not_valid_after_utc


def ensure_default_certificate(
    state_dir: Path, domain: str, cert: Path | None, key: Path | None
) -> DefaultCertificate:
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise PKIError("--default-cert and --default-key go together")
        return DefaultCertificate(cert, key, generated=False)
    state_dir.mkdir(parents=True, exist_ok=True)
    name = f"default-{domain}"
    cert_path, key_path = state_dir / f"{name}.crt", state_dir / f"{name}.key"
    lock_path = state_dir / f".{name}.lock"
    # Several workers may start at once: one generates, the others wait and reuse.
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert_path.exists() and key_path.exists()):
            sans: list[x509.GeneralName] = [x509.DNSName(f"*.{domain}"), x509.DNSName(domain)]
            write_pair(make_self_signed(f"*.{domain}", sans), state_dir, name)
            log.info("generated a self-signed default certificate for *.%s in %s", domain, cert_path)
    return DefaultCertificate(cert_path, key_path, generated=True)
