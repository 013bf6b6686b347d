"""Certificates made exactly as the seed article does, with the openssl CLI (hardening.md rule 3):
a CA `customCA` (genrsa 2048, req, x509 -req -signkey with keyUsage and basicConstraints CA:true) and an
X.509 v1 leaf `CN=httpd-rencrypt.ayush.com` with no SAN, signed with -CA -CAkey -CAcreateserial."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_binary


@dataclass(frozen=True)
class SeedCerts:
    ca_crt: Path
    ca_key: Path
    crt: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.crt, self.key)
        return ctx


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


def seed_certs(
    directory: Path, ca_cn: str = "customCA", cn: str = "httpd-rencrypt.ayush.com", prefix: str = ""
) -> SeedCerts:
    openssl = require_binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca = f"{prefix}RootCA"
    leaf = f"{prefix}httpd"
    (directory / "ca.ext").write_text(
        "keyUsage = critical, digitalSignature, keyCertSign, cRLSign\nbasicConstraints = critical, CA:true\n"
    )
    _run(openssl, "genrsa", "-out", f"{ca}.key", "2048", cwd=directory)
    _run(
        openssl,
        "req",
        "-new",
        "-key",
        f"{ca}.key",
        "-subj",
        f"/CN={ca_cn}",
        "-out",
        f"{ca}.csr",
        cwd=directory,
    )
    _run(
        openssl,
        "x509",
        "-req",
        "-days",
        "365",
        "-in",
        f"{ca}.csr",
        "-signkey",
        f"{ca}.key",
        "-extfile",
        "ca.ext",
        "-out",
        f"{ca}.crt",
        cwd=directory,
    )
    _run(openssl, "genrsa", "-out", f"{leaf}.key", "2048", cwd=directory)
    _run(
        openssl,
        "req",
        "-new",
        "-key",
        f"{leaf}.key",
        "-subj",
        f"/CN={cn}",
        "-out",
        f"{leaf}.csr",
        cwd=directory,
    )
    _run(
        openssl,
        "x509",
        "-req",
        "-days",
        "365",
        "-in",
        f"{leaf}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{leaf}.crt",
        cwd=directory,
    )
    return SeedCerts(
        directory / f"{ca}.crt", directory / f"{ca}.key", directory / f"{leaf}.crt", directory / f"{leaf}.key"
    )
