"""Which build of the per-request path runs: the modules compiled by Cython (setup.py), or their Python
sources.

Both are the same source files; the compiled build is only faster. The sources are used instead when:
- `SHIFTROUTE_PURE_PYTHON=1` is set (to compare, or to rule the compiled build out when debugging), or
- a compiled module is older than its source, or than a `.pxd` it was built against, in a source checkout
  (an editable install where a `.py` or `.pxd` was edited after the last `make install`): running the stale
  build would silently run old code.
It is all or nothing: compiled modules rely on each other's extension types (the `.pxd` files), so one
source module among compiled ones could be refused by them.

`install()` runs when the `shiftroute` package is imported, before any compiled module is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType

from shiftroute.accel_modules import COMPILED_MODULES

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so

reason_for_sources = ""  # why the sources are used although compiled modules exist ("" = they are not)


def _paths(name: str) -> tuple[str, str]:
    base = os.path.join(_PACKAGE_DIR, *name.split(".")[1:])
    return base + ".py", base + _EXTENSION


def compiled_present() -> list[str]:
    """The modules that have a compiled build next to their source."""
    return [name for name in COMPILED_MODULES if os.path.exists(_paths(name)[1])]


# `from shiftroute.a.b cimport x` and `cimport shiftroute.a.b as x` in a .pxd: the modules whose
# declarations a compiled module was built against.
_CIMPORT = re.compile(
    r"^\s*(?:from\s+(shiftroute(?:\.\w+)+)\s+cimport|cimport\s+(shiftroute(?:\.\w+)+))", re.M
)


def declarations(name: str) -> list[str]:
    """The `.pxd` files a compiled module depends on: its own and those it cimports, transitively (what
    setup.py's cythonize tracks to decide what to rebuild). Declarations are part of what a module compiles
    to: types, and inline C such as protocol/head_bytes.pxd."""
    files: list[str] = []
    seen: set[str] = set()
    todo = [name]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        pxd = _paths(module)[0][: -len(".py")] + ".pxd"
        if not os.path.exists(pxd):
            continue
        files.append(pxd)
        with open(pxd, encoding="utf-8") as f:
            todo.extend(m.group(1) or m.group(2) for m in _CIMPORT.finditer(f.read()))
    return files


def stale() -> list[str]:
    """Compiled modules older than their source or than a `.pxd` they were built against, in a source
    checkout (an installed wheel's files carry install times, not build times, so they are not compared)."""
    if "site-packages" in _PACKAGE_DIR or "dist-packages" in _PACKAGE_DIR:
        return []
    out = []
    for name in compiled_present():
        source, compiled = _paths(name)
        built = os.path.getmtime(compiled)
        inputs = [source, *declarations(name)] if os.path.exists(source) else declarations(name)
        if any(os.path.getmtime(path) > built for path in inputs):
            out.append(name)
    return out


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the listed modules' `.py` files, so that Python does not prefer the compiled file beside them."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED_MODULES:
            return None
        source = _paths(fullname)[0]
        return importlib.util.spec_from_file_location(fullname, source) if os.path.exists(source) else None


def install() -> None:
    global reason_for_sources
    if not compiled_present():
        return
    if os.environ.get("SHIFTROUTE_PURE_PYTHON", "") not in ("", "0"):
        reason_for_sources = "SHIFTROUTE_PURE_PYTHON is set"
    else:
        old = stale()
        if not old:
            return
        names = ", ".join(m.rsplit(".", 1)[1] for m in old)
        reason_for_sources = f"compiled {names} older than the sources (run `make install`)"
    if not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())


def describe() -> str:
    """One line for the router's log: what runs the per-request path."""
    loaded = [m for m in (sys.modules.get(name) for name in COMPILED_MODULES) if m is not None]
    compiled = [m for m in loaded if (m.__file__ or "").endswith(_EXTENSION)]
    if compiled and len(compiled) == len(loaded):
        return f"compiled (Cython, {len(compiled)} modules)"
    if compiled:
        return f"partly compiled ({len(compiled)} of {len(loaded)} modules)"
    if reason_for_sources:
        return f"Python sources ({reason_for_sources})"
    return "Python sources (no compiled modules installed)"
