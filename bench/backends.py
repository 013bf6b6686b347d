"""The backend: nginx from Debian serving `Hello` (6 bytes), 1 KiB and 1 MiB over HTTPS and plain HTTP,
with keep-alive, pinned to the load generator's CPU."""

from __future__ import annotations

import os
import shutil
import string
from dataclasses import dataclass
from pathlib import Path

from bench.certs import Certs
from bench.procs import Procs, free_port, wait_port

TEMPLATES = Path(__file__).with_name("templates")
PATHS = {"hello": "/", "1k": "/1k", "1m": "/1m"}
SIZES = {"hello": 6, "1k": 1024, "1m": 1024 * 1024}


@dataclass(frozen=True, slots=True)
class Backend:
    http_port: int
    https_port: int
    pid: int


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not found:
        raise RuntimeError("nginx not found: run `make system-deps`")
    return found


def _write_files(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "hello").write_bytes(b"Hello\n")
    (root / "1k").write_bytes(b"k" * SIZES["1k"])
    (root / "1m").write_bytes(os.urandom(SIZES["1m"]))
    for path in (root, *root.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)


def start_backend(procs: Procs, workdir: Path, certs: Certs, cpu: int) -> Backend:
    directory = workdir / "nginx"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    workdir.chmod(0o755)  # the worker (user nobody when started as root) reads the files
    _write_files(directory / "www")
    http_port, https_port = free_port(), free_port()
    config = string.Template((TEMPLATES / "nginx.conf").read_text()).substitute(
        dir=directory,
        root=directory / "www",
        http_port=http_port,
        https_port=https_port,
        cert=certs.backend_crt,
        key=certs.backend_key,
    )
    conf = directory / "nginx.conf"
    conf.write_text(config)
    proc = procs.start("nginx", [nginx_binary(), "-p", str(directory), "-c", str(conf)], cpu=cpu)
    wait_port(http_port, proc=proc)
    wait_port(https_port, proc=proc)
    return Backend(http_port=http_port, https_port=https_port, pid=proc.pid)
