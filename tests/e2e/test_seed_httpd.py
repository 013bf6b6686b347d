"""The seed story with the real thing: Apache httpd 2.4 + mod_ssl serving "Hello" with certificates made
by the seed's openssl commands, a reencrypt route with --dest-ca-cert=RootCA.crt made with shiftroute
commands only, and real curl through the router."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import free_port, require_binary, wait_until
from tests.e2e.helpers import Cli
from tests.e2e.support.certs import seed_certs
from tests.e2e.support.httpd import Httpd
from tests.e2e.support.router import RouterProcess

HOST = "httpd-rencrypt.ayush.com"
COLUMNS = ["NAME", "HOST/PORT", "PATH", "SERVICES", "PORT", "TERMINATION", "WILDCARD"]


def columns(lines: list[str]) -> list[dict[str, str]]:
    """Rows of a kubectl-style table, cut at the header's column starts (PATH may be empty)."""
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    assert header.split() == COLUMNS, header
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


def test_seed_reencrypt_route_to_real_httpd(cli: Cli, router: RouterProcess, tmp_path: Path) -> None:
    curl = require_binary("curl")
    certs = seed_certs(tmp_path / "seed")
    with Httpd(tmp_path / "httpd", certs.crt, certs.key, free_port(), server_name=HOST) as httpd:
        cli("create", "service", "httpd", "--port", "443", "--endpoint", httpd.address, check=True)
        # Run where RootCA.crt is, typed exactly as in the seed article.
        cli(
            "create",
            "route",
            "reencrypt",
            "httpd",
            "--service=httpd",
            f"--hostname={HOST}",
            "--dest-ca-cert=RootCA.crt",
            cwd=certs.ca_crt.parent,
            check=True,
        )

        def admitted() -> bool:
            out = cli("get", "route", "-o", "wide", check=True).stdout
            return "default=Admitted" in out

        wait_until(admitted, 10, "route httpd admitted")
        rows = columns(cli("get", "route", check=True).stdout.splitlines())
        assert rows == [
            {
                "NAME": "httpd",
                "HOST/PORT": HOST,
                "PATH": "",
                "SERVICES": "httpd",
                "PORT": "443-tcp",
                "TERMINATION": "reencrypt",
                "WILDCARD": "None",
            }
        ]

        port = router.https
        proc = subprocess.run(
            [
                curl,
                "-kv",
                "--max-time",
                "10",
                "--resolve",
                f"{HOST}:{port}:127.0.0.1",
                f"https://{HOST}:{port}/",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "Hello\n"
        verbose = proc.stderr
        assert re.search(r"^< HTTP/1\.1 200 OK", verbose, re.M), verbose
        # The client sees the router's default certificate, not httpd's.
        assert re.search(r"^\*\s+subject: CN=\*\.apps\.localhost$", verbose, re.M), verbose
        assert "CN=httpd-rencrypt.ayush.com" not in verbose and "customCA" not in verbose
        cookie = re.search(r"^< set-cookie: ([0-9a-f]{32})=([0-9a-f]{32})(.*)$", verbose, re.M | re.I)
        assert cookie is not None, verbose
        attributes = [a.strip() for a in cookie.group(3).strip().split(";") if a.strip()]
        assert {"path=/", "HttpOnly", "Secure"} <= set(attributes), cookie.group(0)
        assert re.search(r"^< cache-control: private\r?$", verbose, re.M | re.I), verbose

        # httpd saw the request arrive over TLS (from the router).
        line = wait_until(
            lambda: next((x for x in httpd.access_log().splitlines() if '"GET / HTTP/1.1" 200' in x), None),
            5,
            "the request in httpd's access log",
        )
        assert re.search(r" TLSv1\.[23] ", str(line)), line
        assert str(line).startswith("127.0.0.1 ")
    assert httpd.proc is not None and httpd.proc.poll() is not None  # stopped at the end
