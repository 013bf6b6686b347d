"""HAProxy 2.6 configured the way OpenShift's router template configures it, rendered by the harness from
bench/templates; started pinned with one thread; reloaded the OpenShift way (`-x` socket transfer, `-sf`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import socket
import string
import subprocess
import time
from pathlib import Path

from bench.certs import Certs
from bench.procs import Procs, free_port, log_tail, wait_port
from bench.routes import BenchRoute

TEMPLATES = Path(__file__).with_name("templates")
# OpenShift's default maxConnections is 50000. HAProxy needs 2 fds per connection and refuses to start when
# it cannot raise RLIMIT_NOFILE that far, so the fd hard limit of the machine bounds it.
OPENSHIFT_MAXCONN = 50000


def maxconn() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return OPENSHIFT_MAXCONN
    return min(OPENSHIFT_MAXCONN, (hard - 100) // 2)


BACKEND_PREFIX = {"edge": "be_edge_http", "reencrypt": "be_secure", "passthrough": "be_tcp"}


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if not found:
        raise RuntimeError("haproxy not found: run `make system-deps`")
    return found


def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES / name).read_text())


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def host_regexp(host: str) -> str:
    """OpenShift's map key for a host without path: `^host\\.?(:[0-9]+)?(/.*)?$`."""
    return "^" + host.replace(".", r"\.") + r"\.?(:[0-9]+)?(/.*)?$"


def backend_name(route: BenchRoute) -> str:
    return f"{BACKEND_PREFIX[route.termination]}:{route.key}"


class HAProxyConfig:
    """Renders haproxy.cfg and its map files into `conf`; per-route CA files as OpenShift writes them."""

    def __init__(self, conf: Path, certs: Certs, http_port: int, https_port: int) -> None:
        self.conf = conf
        self.certs = certs
        self.http_port = http_port
        self.https_port = https_port
        (conf / "cacerts").mkdir(parents=True, exist_ok=True)
        self.stats_socket = conf / "haproxy.sock"
        self._http = _template("haproxy-backend-http.cfg")
        self._tcp = _template("haproxy-backend-tcp.cfg")
        self._main = _template("haproxy.cfg")

    @property
    def path(self) -> Path:
        return self.conf / "haproxy.cfg"

    def _backend(self, route: BenchRoute) -> str:
        server = f"pod:{route.name}-1:{route.name}:{route.endpoint_port}-tcp:127.0.0.1:{route.endpoint_port}"
        if route.termination == "passthrough":
            return self._tcp.substitute(backend=backend_name(route), server=server, port=route.endpoint_port)
        options = ""
        if route.termination == "reencrypt":
            ca_file = self.conf / "cacerts" / f"{route.key}.pem"
            if not ca_file.exists():
                shutil.copyfile(self.certs.ca, ca_file)
            options = f" ssl verify required ca-file {ca_file}"
        return self._http.substitute(
            comment=f"{route.termination} route {route.key}",
            backend=backend_name(route),
            cookie=_md5(route.key),
            cookie_value=_md5(server),
            server=server,
            port=route.endpoint_port,
            server_options=options,
        )

    def render(self, routes: list[BenchRoute]) -> None:
        tcp = [r for r in routes if r.termination == "passthrough"]
        http = [r for r in routes if r.termination != "passthrough"]
        maps = {
            "os_sni_passthrough.map": [f"{host_regexp(r.host)} 1" for r in tcp],
            "os_tcp_be.map": [f"{host_regexp(r.host)} {backend_name(r)}" for r in tcp],
            "os_edge_reencrypt_be.map": [f"{host_regexp(r.host)} {backend_name(r)}" for r in http],
            "os_http_be.map": [],
            "os_route_http_redirect.map": [],
            "cert_config.map": [],
        }
        for name, lines in maps.items():
            (self.conf / name).write_text("".join(line + "\n" for line in sorted(lines, reverse=True)))
        text = self._main.substitute(
            maxconn=maxconn(),
            stats_socket=self.stats_socket,
            http_port=self.http_port,
            https_port=self.https_port,
            conf=self.conf,
            default_pem=self.certs.default_pem,
            sni_socket=self.conf / "fe_sni.sock",
            no_sni_socket=self.conf / "fe_no_sni.sock",
            backends="".join(self._backend(r) for r in routes),
        )
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.path)


class HAProxyRouter:
    """HAProxy with `nbthread 1`, pinned; `reload()` starts a new process that takes the listeners over."""

    def __init__(self, name: str, procs: Procs, workdir: Path, certs: Certs) -> None:
        self.name = name
        self.procs = procs
        self.http_port = free_port()
        self.https_port = free_port()
        self.config = HAProxyConfig(workdir / name, certs, self.http_port, self.https_port)
        self.proc: subprocess.Popen[bytes] | None = None
        self.old: list[subprocess.Popen[bytes]] = []
        self.cpu = 0
        self.generation = 0

    def pids(self) -> list[int]:
        return [p.pid for p in (self.proc, *self.old) if p is not None and p.poll() is None]

    def _argv(self) -> list[str]:
        # -db: foreground (the harness owns the process). -q: OpenShift runs HAProxy as a daemon, whose
        # stderr goes nowhere; in the foreground every reload would print one warning per stopped proxy
        # (10 000 lines with the big configuration).
        return [haproxy_binary(), "-db", "-q", "-f", str(self.config.path)]

    def start(self, cpu: int) -> None:
        self.cpu = cpu
        check = subprocess.run([*self._argv(), "-c", "-q"], capture_output=True, text=True, timeout=120)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c failed: {check.stderr.strip() or check.stdout.strip()}")
        self.proc = self.procs.start(self.name, self._argv(), cpu=cpu)
        wait_port(self.https_port, timeout=60, proc=self.proc)
        wait_port(self.http_port, timeout=10, proc=self.proc)

    def reload(self) -> None:
        """OpenShift's reload: a new process gets the listening sockets over the stats socket (-x) and
        tells the old one to finish its connections and exit (-sf)."""
        assert self.proc is not None
        self.generation += 1
        old = self.proc
        argv = [*self._argv(), "-x", str(self.config.stats_socket), "-sf", str(old.pid)]
        self.proc = self.procs.start(f"{self.name}-reload", argv, cpu=self.cpu)
        self.old.append(old)
        self.wait_ready(self.proc)
        self.reap()

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        """Until the new process answers on the stats socket (it has the listeners then). OpenShift's reload
        script waits the same way before the next reload; reloading faster breaks the `-x` hand-over."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"haproxy reload exited with {proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError):
                if self.show_info().get("Pid") == str(proc.pid):
                    return
            time.sleep(0.005)
        raise TimeoutError(f"haproxy reload not ready after {timeout}s")

    def reap(self) -> None:
        for proc in list(self.old):
            if proc.poll() is not None:
                self.old.remove(proc)
                with contextlib.suppress(ValueError):
                    self.procs.running.remove(proc)

    def show_info(self) -> dict[str, str]:
        """`show info` over the stats socket (bounded)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.config.stats_socket))
            sock.sendall(b"show info\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        out = {}
        for line in data.decode(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
        return out

    def pause(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        for proc in [p for p in (self.proc, *self.old) if p is not None]:
            self.procs.stop(proc)
        self.proc = None
        self.old = []

    def log(self) -> str:
        return log_tail(self.procs.logdir / f"{self.name}-reload.log")
