"""`shiftroute demo --once` through the console script: the whole walkthrough with real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SHIFTROUTE, wait_until


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(cwd / "state")}
    env.pop("SHIFTROUTE_STORE", None)
    return subprocess.run(
        [SHIFTROUTE, "demo", *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


def test_demo_once_runs_every_step_and_passes(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = run_demo("--once", "--workdir", str(workdir), cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert f"workspace: {workdir}" in out
    for number in range(1, 6):
        assert f"==> step {number}/6: " in out
    assert "==> step 6/6" not in out  # --once stops after the requests
    # Step 1-4: the commands as a user types them.
    assert "$ shiftroute pki ca RootCA --dir pki" in out
    assert "--cn httpd-rencrypt.apps.localhost" in out
    assert re.search(r"\$ shiftroute demo-app --cert pki/httpd-rencrypt.crt .* --port 0", out)
    assert "--dest-ca-cert=pki/RootCA.crt" in out
    assert re.search(r"router ready: http 127\.0\.0\.1:\d+, https 127\.0\.0\.1:\d+", out)
    # Step 5: one block per route, each with what the client and the application saw.
    blocks = re.split(r"\n  (?=(?:reencrypt|edge|passthrough) route )", out.split("==> step 5/6")[1])
    results = {b.split(" ", 1)[0]: b.split("\n\n")[0] for b in blocks[1:]}
    assert set(results) == {"reencrypt", "edge", "passthrough"}
    for block in results.values():
        assert "status:                  HTTP/1.1 200 OK" in block, block
        assert "body:                    Hello" in block, block
        assert block.rstrip().endswith("PASS"), block
        assert "client saw certificate:" in block and "application saw:" in block, block
    assert "subject CN=*.apps.localhost" in results["reencrypt"]
    assert "application saw:         TLS TLSv1." in results["reencrypt"]
    assert "application saw:         TLS none" in results["edge"]
    assert "issuer CN=RootCA" in results["passthrough"]
    assert "SNI httpd-passthrough.apps.localhost" in results["passthrough"]
    # Then `shiftroute get routes`, with the three routes.
    assert "$ shiftroute get routes" in out
    assert re.search(r"httpd-rencrypt\s+httpd-rencrypt\.apps\.localhost\s+httpd\s+443-tcp\s+reencrypt", out)
    assert "demo: every check passed" in out
    assert "PRIVATE KEY" not in out + proc.stderr
    # The router it started was stopped cleanly (SIGTERM, drained), not killed.
    assert (workdir / "logs" / "router.log").exists()
    assert "drained" in (workdir / "logs" / "router.log").read_text()


def test_demo_refuses_a_used_workdir_in_one_line(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    proc = run_demo("--once", "--workdir", str(used), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: --workdir") and "Traceback" not in proc.stderr


def test_demo_app_help_and_usage_errors(tmp_path: Path) -> None:
    help_text = subprocess.run([SHIFTROUTE, "demo-app", "--help"], capture_output=True, text=True, timeout=30)
    assert help_text.returncode == 0 and "X-Demo-App-TLS" in help_text.stdout
    proc = subprocess.run([SHIFTROUTE, "demo-app", "--port", "0"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: give --cert and --key to serve HTTPS, or --plain for plain HTTP"


def test_demo_names_the_failing_step_and_stops_everything(tmp_path: Path) -> None:
    """Without --once the demo keeps running (step 6); when the router dies it says so, exits 1, and stops
    the applications it started."""
    workdir = tmp_path / "demo"
    out_path = tmp_path / "demo.out"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    with open(out_path, "w") as out:
        demo = subprocess.Popen(
            [SHIFTROUTE, "demo", "--workdir", str(workdir)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        # Step 6's last line (the curl lines come between it and the step's title, written one by one).
        wait_until(lambda: "shiftroute diagnose route" in out_path.read_text(), 60, "the demo's step 6")
        text = out_path.read_text()
        assert "Ctrl-C stops everything" in text
        https = re.search(r"router ready: http 127\.0\.0\.1:\d+, https 127\.0\.0\.1:(\d+)", text)
        assert https is not None
        assert f"curl -kv --resolve httpd-rencrypt.apps.localhost:{https.group(1)}:127.0.0.1 " in text
        app_ports = [int(p) for p in re.findall(r"serving 'Hello' on https?://127\.0\.0\.1:(\d+)/", text)]
        assert len(app_ports) == 2
        router_pid = json.loads((workdir / "router" / "ready.json").read_text())["pid"]
        os.kill(router_pid, signal.SIGKILL)
        assert demo.wait(30) == 1
    finally:
        if demo.poll() is None:
            # Ctrl-C first: the demo stops what it started (a SIGKILL would leave its router and apps).
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(20)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait(10)
    text = out_path.read_text()
    assert "demo failed at step 6 (running): router exited with -9" in text
    for port in app_ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
