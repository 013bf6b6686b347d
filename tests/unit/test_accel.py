"""The compiled request path (setup.py, shiftroute.accel): used when built, the sources otherwise, and never
a compiled module older than its source."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shiftroute import accel
from shiftroute.accel_modules import COMPILED_MODULES

EXT = importlib.machinery.EXTENSION_SUFFIXES[0]


def _loaded_from(env: dict[str, str]) -> dict[str, str]:
    """Import every listed module in a fresh interpreter; the file each came from."""
    code = (
        "import importlib, json, shiftroute.accel as a\n"
        "from shiftroute.accel_modules import COMPILED_MODULES as M\n"
        "print(json.dumps({m: importlib.import_module(m).__file__ for m in M}))\n"
        "print(a.describe())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    assert done.returncode == 0, done.stderr
    files, describe = done.stdout.splitlines()
    return {"describe": describe, **json.loads(files)}


def test_the_compiled_build_is_used_when_installed() -> None:
    present = accel.compiled_present()
    if os.environ.get("CI") == "true":
        # CI installs with `make install`, which compiles: a missing build is a failure there, not a skip.
        assert present == COMPILED_MODULES, "make install did not compile the request path (Cython, gcc?)"
    loaded = _loaded_from({})
    if not present:  # a pure-Python install (no Cython or no C compiler): it says so
        assert loaded["describe"] == "Python sources (no compiled modules installed)"
        return
    for module in COMPILED_MODULES:
        assert loaded[module].endswith(EXT), f"{module} loaded from {loaded[module]}"
    assert loaded["describe"] == f"compiled (Cython, {len(COMPILED_MODULES)} modules)"


def test_pure_python_is_selectable_and_complete() -> None:
    loaded = _loaded_from({"SHIFTROUTE_PURE_PYTHON": "1"})
    for module in COMPILED_MODULES:
        assert loaded[module].endswith(".py"), f"{module} loaded from {loaded[module]}"
    if accel.compiled_present():
        assert loaded["describe"] == "Python sources (SHIFTROUTE_PURE_PYTHON is set)"


def test_a_compiled_module_older_than_its_source_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "shiftroute"
    (package / "engine").mkdir(parents=True)
    source = package / "engine" / "tls.py"
    compiled = package / "engine" / f"tls{EXT}"
    source.write_text("# source\n")
    compiled.write_bytes(b"\0")
    monkeypatch.setattr(accel, "_PACKAGE_DIR", str(package))
    os.utime(source, (1_000, 1_000))
    os.utime(compiled, (2_000, 2_000))
    assert accel.compiled_present() == ["shiftroute.engine.tls"]
    assert accel.stale() == []
    os.utime(source, (3_000, 3_000))  # edited after the build
    assert accel.stale() == ["shiftroute.engine.tls"]
    os.utime(source, (1_000, 1_000))
    assert accel.stale() == []
    # A declaration the module was built against, edited after the build, counts too: its own .pxd and
    # those it cimports (here inline C, as protocol/head_bytes.pxd), not an unrelated one.
    (package / "protocol").mkdir()
    (package / "engine" / "tls.pxd").write_text("cimport shiftroute.protocol.head_bytes as head_bytes\n")
    (package / "protocol" / "head_bytes.pxd").write_text("# inline C\n")
    (package / "protocol" / "other.pxd").write_text("# declarations of another module\n")
    for path in (package / "engine" / "tls.pxd", package / "protocol" / "head_bytes.pxd"):
        os.utime(path, (1_000, 1_000))
    os.utime(package / "protocol" / "other.pxd", (3_000, 3_000))
    assert accel.declarations("shiftroute.engine.tls") == [
        str(package / "engine" / "tls.pxd"),
        str(package / "protocol" / "head_bytes.pxd"),
    ]
    assert accel.stale() == []
    os.utime(package / "protocol" / "head_bytes.pxd", (3_000, 3_000))
    assert accel.stale() == ["shiftroute.engine.tls"]
    # An installed wheel's files carry install times, not build times: not compared there.
    monkeypatch.setattr(accel, "_PACKAGE_DIR", str(tmp_path / "site-packages" / "shiftroute"))
    assert accel.stale() == []


def test_listed_modules_exist() -> None:
    root = Path(accel.__file__).parent
    for module in COMPILED_MODULES:
        assert (root / Path(*module.split(".")[1:])).with_suffix(".py").is_file(), module
