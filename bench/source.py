"""Which shiftroute is measured. By default the working tree (the venv's editable install). With
`--ref REF`, a snapshot of `src/shiftroute` at that git ref (`git archive`, read-only for the repository),
compiled as `make install` compiles the working tree (setup.py, when the ref has one), put first on
PYTHONPATH for every shiftroute process and for the harness's own store calls: a consistent version even
while the working tree is being edited."""

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


def export(ref: str) -> tuple[str, Path]:
    """A compiled snapshot of src/shiftroute at `ref` in a new temporary directory (removed at exit):
    the commit's full hash, and the directory to put first on PYTHONPATH."""
    sha = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    has_setup = bool(_git("ls-tree", "--name-only", sha, "setup.py"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", sha, "src/shiftroute"]
        + (["setup.py", "pyproject.toml", "README.md"] if has_setup else []),  # setup.py reads all three
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    dest = Path(tempfile.mkdtemp(prefix="shiftroute-src-"))
    atexit.register(shutil.rmtree, dest, True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    if has_setup:
        built = subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
            cwd=dest,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if built.returncode != 0:
            raise SystemExit(f"{ref}: compiling the snapshot failed: {built.stderr.strip()[-2000:]}")
    return sha, dest / "src"


def use_ref(ref: str | None) -> None:
    """Export src/shiftroute at `ref` and make it the shiftroute everything imports (idempotent)."""
    if ref is None or _active.get("ref") == ref:
        return
    sha, snapshot = export(ref)
    src = str(snapshot)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, src)
    if "shiftroute" in sys.modules:
        raise SystemExit("--ref: shiftroute was imported before the snapshot was put in place")
    _active.update(ref=ref, sha=sha, src=src)


_REQUEST_PATH = (
    "import importlib, shiftroute.accel as a\n"
    "from shiftroute.accel_modules import COMPILED_MODULES as M\n"
    "[importlib.import_module(m) for m in M]\n"
    "print(a.describe())\n"
)


def request_path() -> str:
    """What runs the measured router's request path: compiled modules or Python sources (shiftroute.accel)."""
    done = subprocess.run([sys.executable, "-c", _REQUEST_PATH], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else "unknown (no shiftroute.accel at this version)"


def describe() -> str:
    """For the results: the commit measured, or the working tree and how far it is from HEAD; and whether
    its request path ran compiled."""
    if _active:
        what = f"git {_active['ref']} = {_active['sha'][:12]} (exported snapshot of src/shiftroute)"
    else:
        head = _git("rev-parse", "--short=12", "HEAD")
        dirty = [line for line in _git("status", "--porcelain", "--", "src").splitlines() if line.strip()]
        state = f"{len(dirty)} file(s) under src/ modified" if dirty else "clean"
        what = f"working tree at {head} ({state})"
    return f"{what}; request path: {request_path()}"
