"""The HTTPS listener (engine/listeners.py) on the router's own server (engine/client_link.py), as the
router runs it: a HubServer making each connection's protocol with HttpsProtocols, real sockets on
127.0.0.1, uvloop. What these cover that the end-to-end tests do not reach quickly: the listener's
deadline, read from engine/clock.py (CLOCK_MONOTONIC in C when compiled) and fired by engine/deadlines.py
from the loop's own clock, closes a silent client after its hello timeout and not before; and what the
listener writes itself (no route, no session) goes out through the outbox made on first write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import uvloop

from shiftroute.engine.client_link import HubServer
from shiftroute.engine.context import Limits, RouterContext
from shiftroute.engine.link_hub import ProtocolMaker
from shiftroute.engine.listeners import HttpsClientProtocol, HttpsProtocols
from shiftroute.routing.table import TableHolder

DEADLINE = 10.0
HELLO_TIMEOUT = 0.3


def run(test: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(asyncio.wait_for(test(), DEADLINE * 3))


async def _serve(ctx: RouterContext) -> HubServer:
    ctx.loop = asyncio.get_running_loop()
    server = HubServer(ctx.loop, HttpsProtocols(ctx, lambda: None))
    server.bind("127.0.0.1", 0, 16)
    await server.start_serving()
    return server


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the router sent before it closed (a reset counts as closed)."""
    got = bytearray()
    async with asyncio.timeout(DEADLINE):
        while True:
            try:
                piece = await reader.read(65536)
            except ConnectionResetError:
                return bytes(got)
            if not piece:
                return bytes(got)
            got += piece


def test_https_protocols_is_the_server_s_maker_and_a_loop_server_s_factory() -> None:
    async def test() -> None:
        ctx = RouterContext(TableHolder(), Limits(), access_log_enabled=False)
        maker = HttpsProtocols(ctx, lambda: None)
        assert isinstance(maker, ProtocolMaker)
        made = maker()  # as loop.create_server calls it (SHIFTROUTE_HTTPS_SOCKETS=loop)
        assert isinstance(made, HttpsClientProtocol)
        assert made.ctx is ctx and made.secure and made._phase == "hello"
        assert made.outbox is None  # made on the first write
        assert made is not maker.make()  # one protocol per connection

    run(test)


def test_a_client_that_sends_no_client_hello_is_closed_after_the_hello_timeout_not_before() -> None:
    async def test() -> None:
        ctx = RouterContext(TableHolder(), Limits(hello_timeout=HELLO_TIMEOUT), access_log_enabled=False)
        server = await _serve(ctx)
        try:
            port = server.sockets[0].getsockname()[1]
            started = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await _until_closed(reader) == b""  # aborted: nothing was ever sent
            waited = time.monotonic() - started
            writer.close()
            # Never early (the deadline's slot must have ended on the loop's clock); and this timeout,
            # not the default 5 s.
            assert HELLO_TIMEOUT <= waited < 5.0, waited
            async with asyncio.timeout(DEADLINE):
                while ctx.connections:
                    await asyncio.sleep(0.01)
            assert ctx.counters.connections_total == 1 and ctx.counters.connections_current == 0
        finally:
            server.close()

    run(test)


def test_plain_http_on_the_https_port_gets_the_listener_s_400_then_the_close() -> None:
    async def test() -> None:
        ctx = RouterContext(TableHolder(), Limits(), access_log_enabled=False)
        server = await _serve(ctx)
        try:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
            answer = await _until_closed(reader)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
            assert b"this port speaks TLS (use https://)" in answer
        finally:
            server.close()

    run(test)
