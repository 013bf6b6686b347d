"""A real Apache httpd 2.4 with mod_ssl (Debian's apache2) as a test backend: its own minimal config in
the test's directory, one foreground process (`-X`) on 127.0.0.1:<port>, serving index.html "Hello" over
TLS, with an access log that records the TLS protocol of each request. Every wait is bounded."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import require_binary

MODULES = Path("/usr/lib/apache2/modules")
# Debian builds log_config and unixd in; these are the loadable ones a static TLS site needs.
LOAD = ("mpm_event", "authz_core", "mime", "dir", "socache_shmcb", "ssl")

CONFIG = """\
ServerRoot "{root}"
ServerName {server_name}
{modules}
{user}
Listen 127.0.0.1:{port}
PidFile "{root}/httpd.pid"
DefaultRuntimeDir "{root}"
ErrorLog "{root}/error.log"
LogLevel info
# %{{SSL_PROTOCOL}}x proves each request arrived over TLS.
LogFormat "%h %t \\"%r\\" %>s %b %{{SSL_PROTOCOL}}x %{{SSL_CIPHER}}x" tls
CustomLog "{root}/access.log" tls
TypesConfig /dev/null
DocumentRoot "{docroot}"
DirectoryIndex index.html
<Directory "{docroot}">
    Require all granted
</Directory>
SSLEngine on
SSLCertificateFile "{cert}"
SSLCertificateKeyFile "{key}"
SSLSessionCache "shmcb:{root}/ssl_scache(512000)"
"""


class Httpd:
    def __init__(self, root: Path, cert: Path, key: Path, port: int, server_name: str = "localhost") -> None:
        self.binary = require_binary("apache2")
        self.root = root
        self.cert = cert
        self.key = key
        self.port = port
        self.server_name = server_name
        self.proc: subprocess.Popen[bytes] | None = None
        self._docroot: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        user = ""
        if os.geteuid() == 0:
            # As root httpd serves as an unprivileged user, who cannot enter pytest's 0700 directories:
            # the document root lives in its own world-readable temporary directory.
            user = "User nobody\nGroup nogroup"
            self._docroot = Path(tempfile.mkdtemp(prefix="shiftroute-httpd-"))
            self._docroot.chmod(0o755)
        else:
            self._docroot = self.root / "www"
            self._docroot.mkdir(exist_ok=True)
        index = self._docroot / "index.html"
        index.write_text("Hello\n")
        index.chmod(0o644)
        modules = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in LOAD)
        config = self.root / "httpd.conf"
        config.write_text(
            CONFIG.format(
                root=self.root,
                server_name=self.server_name,
                modules=modules,
                user=user,
                port=self.port,
                docroot=self._docroot,
                cert=self.cert,
                key=self.key,
            )
        )
        return config

    def start(self, timeout: float = 15.0) -> Httpd:
        config = self._write_config()
        log = open(self.root / "stdout.log", "ab")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen(
            [self.binary, "-f", str(config), "-X"], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"httpd exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"httpd not listening on {self.address} after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for name in ("stdout.log", "error.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def access_log(self) -> str:
        path = self.root / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._docroot is not None and self._docroot.parent != self.root:
            shutil.rmtree(self._docroot, ignore_errors=True)

    def __enter__(self) -> Httpd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
