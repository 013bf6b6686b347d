"""uvloop's map of file descriptors to transports, made cheap.

uvloop keeps every transport it makes in a `weakref.WeakValueDictionary` keyed by file descriptor, for one
check only: `add_reader`/`add_writer` refuse a descriptor an open transport owns ("File descriptor N is
used by transport"). The dictionary's `__setitem__` and its `KeyedRef` are Python code, and its removal
callback runs again when the transport dies: callgrind counted 12.7k instructions per passthrough
connection (two transports) in it, a tenth of the router's user-space work per full handshake (issue 5,
BENCHMARKS.md). `TransportRegistry` keeps the same weak mapping in a plain dict of weak references:
compiled, setting an entry is one `weakref` and one dict store, in C; a dead entry is dropped when it is
read or overwritten (descriptor numbers are reused, so the dict never holds more than the process's
open-file limit).

`install(loop)` puts a registry in place of uvloop's dictionary. The attribute is private to uvloop's
extension type (`cdef object _transports`), so it is found, not named: the loop must be uvloop's, hold
exactly one `WeakValueDictionary` among the objects it references (gc.get_referents), still empty, and
exactly one pointer-sized field of the loop must hold that object's address. Anything else leaves uvloop
as it is and says why; the router logs the outcome at start (`transport map: ...`).
`SHIFTROUTE_UVLOOP_TRANSPORTS=keep` leaves uvloop's own dictionary in place.
"""

from __future__ import annotations

import ctypes
import gc
import os
import weakref
from typing import Any

_ref = weakref.ref


class TransportRegistry:
    """A weak-valued mapping of file descriptor to transport, with the two operations uvloop uses:
    `registry[fd] = transport`, and `registry[fd]`, which raises KeyError when there is no live one."""

    def __init__(self) -> None:
        self._refs: dict[int, Any] = {}

    def __setitem__(self, fd: int, transport: object) -> None:
        self._refs[fd] = _ref(transport)

    def __getitem__(self, fd: int) -> object:
        transport = self._refs[fd]()
        if transport is None:
            del self._refs[fd]
            raise KeyError(fd)
        return transport

    def __delitem__(self, fd: int) -> None:
        del self._refs[fd]

    def __contains__(self, fd: object) -> bool:
        ref = self._refs.get(fd)  # type: ignore[call-overload]
        return ref is not None and ref() is not None

    def __len__(self) -> int:
        return sum(1 for ref in self._refs.values() if ref() is not None)


def install(loop: object) -> str:
    """Put a TransportRegistry in place of the transport dictionary of `loop`; what was done, for the log."""
    if os.environ.get("SHIFTROUTE_UVLOOP_TRANSPORTS", "") == "keep":
        return "uvloop's WeakValueDictionary (SHIFTROUTE_UVLOOP_TRANSPORTS=keep)"
    try:
        import uvloop.loop
    except ImportError:
        return "no uvloop"
    base = uvloop.loop.Loop
    if not isinstance(loop, base):
        return f"not uvloop's loop ({type(loop).__name__}): nothing to replace"
    found = [o for o in gc.get_referents(loop) if type(o) is weakref.WeakValueDictionary]
    if len(found) != 1:
        return f"uvloop's WeakValueDictionary kept: the loop holds {len(found)} of them, not 1"
    old = found[0]
    if len(old):
        return "uvloop's WeakValueDictionary kept: it already holds transports"
    word = ctypes.sizeof(ctypes.c_void_p)
    fields = (ctypes.c_void_p * (base.__basicsize__ // word)).from_address(id(loop))
    # Fields 0 and 1 are the object's reference count and type; the address must appear exactly once.
    hits = [i for i in range(2, len(fields)) if fields[i] == id(old)]
    if len(hits) != 1:
        return f"uvloop's WeakValueDictionary kept: its address is in {len(hits)} fields of the loop, not 1"
    registry = TransportRegistry()
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(registry))  # the loop's reference, released with it
    fields[hits[0]] = id(registry)
    ctypes.pythonapi.Py_DecRef(ctypes.py_object(old))  # the loop's reference to its old dictionary
    del old, found
    return "a weak dict in C (uvloop's WeakValueDictionary replaced)"
