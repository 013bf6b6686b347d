"""engine/transports.py: uvloop's fd -> transport dictionary replaced by a weak map in C. What a user of the
loop can observe is uvloop's own check, which must hold as before: add_reader/add_writer refuse a
descriptor an open transport owns, and accept the same number once that transport is gone. Real uvloop
loops, real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import socket
from typing import Any

import pytest
import uvloop

from shiftroute.engine import transports
from shiftroute.engine.transports import TransportRegistry


class _Thing:
    """Something weak-referenceable (uvloop's transports are)."""


def test_registry_is_a_weak_map_of_live_objects() -> None:
    registry = TransportRegistry()
    kept, dropped = _Thing(), _Thing()
    registry[3] = kept
    registry[4] = dropped
    assert registry[3] is kept and 3 in registry and len(registry) == 2
    del dropped
    gc.collect()
    with pytest.raises(KeyError):
        registry[4]  # dead: gone, as from a WeakValueDictionary
    assert 4 not in registry and len(registry) == 1
    with pytest.raises(KeyError):
        registry[5]
    registry[3] = replacement = _Thing()  # a descriptor number reused by a new transport
    assert registry[3] is replacement
    del registry[3]
    assert 3 not in registry


def _run(main: Any) -> Any:
    return uvloop.run(asyncio.wait_for(main, 20))


def test_install_replaces_uvloops_dictionary_and_its_check_still_holds() -> None:
    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        done = transports.install(loop)
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        fd = transport.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError) as refused:
            loop.add_reader(fd, lambda: None)
        transport.close()
        await asyncio.sleep(0.05)  # uvloop closes the handle on its next iteration
        del transport
        gc.collect()
        reused = socket.socket()
        try:
            assert reused.fileno() == fd  # the lowest free number: the closed transport's
            loop.add_reader(reused.fileno(), lambda: None)  # no RuntimeError: no transport owns it any more
            loop.remove_reader(reused.fileno())
        finally:
            reused.close()
            server.close()
        return done, str(refused.value)

    done, refused = _run(main())
    assert done == "a weak dict in C (uvloop's WeakValueDictionary replaced)"
    assert "is used by transport" in refused


def test_install_refuses_what_it_cannot_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    async def twice() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        return transports.install(loop), transports.install(loop)

    first, second = _run(twice())
    assert first.startswith("a weak dict in C")
    # The second time there is no WeakValueDictionary left to find: nothing is touched.
    assert second == "uvloop's WeakValueDictionary kept: the loop holds 0 of them, not 1"

    async def busy() -> str:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        try:
            return transports.install(loop)  # too late: entries would be lost
        finally:
            transport.close()
            server.close()

    assert _run(busy()) == "uvloop's WeakValueDictionary kept: it already holds transports"

    async def plain() -> str:
        return transports.install(asyncio.get_running_loop())

    assert asyncio.run(plain()) == "not uvloop's loop (_UnixSelectorEventLoop): nothing to replace"
    monkeypatch.setenv("SHIFTROUTE_UVLOOP_TRANSPORTS", "keep")
    assert _run(twice())[0] == "uvloop's WeakValueDictionary (SHIFTROUTE_UVLOOP_TRANSPORTS=keep)"
