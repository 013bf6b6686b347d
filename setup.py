"""Optional compiled modules: the per-request path of the data plane, compiled by Cython from the same
Python sources (pure-Python mode: no .pyx, nothing to keep in step). Without Cython or a C compiler, or
with SHIFTROUTE_NO_EXTENSIONS=1 at install time, shiftroute installs and runs as pure Python.

What is compiled and why: BENCHMARKS.md ("Compiled request path"); the .pxd files beside some of the
modules declare their hot classes' attributes (extension types in the compiled build). At run time
`shiftroute.accel` decides which modules are used (and falls back to the sources when a compiled module
is older than its source).
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
from shiftroute.accel_modules import COMPILED_MODULES  # a plain list, no imports


def extensions() -> list[object]:
    if os.environ.get("SHIFTROUTE_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("shiftroute: Cython not available, installing as pure Python", file=sys.stderr)
        return []
    from setuptools import Extension

    modules = [
        Extension(name, [os.path.join("src", *name.split(".")) + ".py"], optional=True)
        for name in COMPILED_MODULES
    ]
    return list(
        cythonize(
            modules,
            compiler_directives={"language_level": 3, "binding": True, "embedsignature": False},
            quiet=True,
            # Generated C out of the package tree: not shipped in a wheel, not mistaken for a source.
            build_dir=os.path.join("build", "cython"),
        )
    )


# Modules compile in parallel (about 40 s one at a time on 2 cores).
setup(ext_modules=extensions(), options={"build_ext": {"parallel": os.cpu_count() or 1}})
