"""The test PKI, made with `shiftroute pki`: one CA, the backend's certificate, the routers' default
(wildcard) certificate. Both routers serve the same default certificate."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DOMAIN = "bench.test"


def shiftroute_cli() -> str:
    """The `shiftroute` console script of the interpreter running the harness (the venv's)."""
    return str(Path(sys.executable).with_name("shiftroute"))


@dataclass(frozen=True, slots=True)
class Certs:
    ca: Path
    backend_crt: Path
    backend_key: Path
    default_crt: Path
    default_key: Path
    default_pem: Path  # certificate then key, as HAProxy's `crt` takes it


def make_certs(directory: Path, key_type: str) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    cli = shiftroute_cli()

    def pki(*args: str) -> None:
        subprocess.run(
            [cli, "pki", *args, "--dir", str(directory), "--force"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    pki("ca", "bench-ca", "--key-type", key_type)
    ca = str(directory / "bench-ca")
    pki("cert", "backend", "--ca", ca, "--san", f"DNS:backend.{DOMAIN},IP:127.0.0.1", "--key-type", key_type)
    pki(
        "cert",
        "default",
        "--ca",
        ca,
        "--cn",
        f"*.{DOMAIN}",
        "--san",
        f"DNS:*.{DOMAIN}",
        "--key-type",
        key_type,
    )
    pem = directory / "default.pem"
    pem.write_bytes((directory / "default.crt").read_bytes() + (directory / "default.key").read_bytes())
    pem.chmod(0o600)
    return Certs(
        ca=directory / "bench-ca.crt",
        backend_crt=directory / "backend.crt",
        backend_key=directory / "backend.key",
        default_crt=directory / "default.crt",
        default_key=directory / "default.key",
        default_pem=pem,
    )
