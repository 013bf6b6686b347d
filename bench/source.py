"""Which shiftroute is measured. By default the working tree (the venv's editable install). With
`--ref REF`, a snapshot of `src/shiftroute` at that git ref (`git archive`, read-only for the repository),
put first on PYTHONPATH for every shiftroute process and for the harness's own store calls: a consistent
version even while the working tree is being edited."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_active: dict[str, str] = {}


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def use_ref(ref: str | None) -> None:
    """Export src/shiftroute at `ref` and make it the shiftroute everything imports (idempotent)."""
    if ref is None or _active.get("ref") == ref:
        return
    sha = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", sha, "src/shiftroute"],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    dest = Path(tempfile.mkdtemp(prefix="shiftroute-src-"))
    atexit.register(shutil.rmtree, dest, True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    src = str(dest / "src")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, src)
    if "shiftroute" in sys.modules:
        raise SystemExit("--ref: shiftroute was imported before the snapshot was put in place")
    _active.update(ref=ref, sha=sha, src=src)


def describe() -> str:
    """For the results: the commit measured, or the working tree and how far it is from HEAD."""
    if _active:
        return f"git {_active['ref']} = {_active['sha'][:12]} (exported snapshot of src/shiftroute)"
    head = _git("rev-parse", "--short=12", "HEAD")
    dirty = [line for line in _git("status", "--porcelain", "--", "src").splitlines() if line.strip()]
    state = f"{len(dirty)} file(s) under src/ modified" if dirty else "clean"
    return f"working tree at {head} ({state})"
