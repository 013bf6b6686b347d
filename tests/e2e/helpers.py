"""Small helpers shared by the router tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from tests.conftest import wait_until
from tests.e2e.support.client import Response, get

Cli = Callable[..., subprocess.CompletedProcess[str]]


def wait_serving(
    port: int,
    host: str,
    tls: bool = False,
    status: int = 200,
    path: str = "/",
    timeout: float = 10.0,
    sni: str | None = "",
) -> Response:
    """Wait (bounded) until a request answers `status`; returns that response."""

    def probe() -> Response | None:
        response = get(port, host, path, tls=tls, sni=sni, timeout=5)
        return response if response.status == status else None

    result = wait_until(probe, timeout, f"{'https' if tls else 'http'}://{host}{path} to answer {status}")
    assert isinstance(result, Response)
    return result


def service(cli: Cli, name: str, port: int, *endpoints: str, namespace: str = "default") -> None:
    args = ["create", "service", name, "--port", str(port), "-n", namespace]
    for endpoint in endpoints:
        args += ["--endpoint", endpoint]
    cli(*args, check=True)
