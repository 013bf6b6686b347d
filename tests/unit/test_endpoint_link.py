"""engine/endpoint_link.py: a passthrough relay's endpoint side on a socket of the router's own, watched in
the loop's LinkHub. Real sockets on 127.0.0.1 against a real asyncio server on uvloop; the peer records what
the link reports, and the server records what it received. Runs in whichever build is installed (compiled:
sock_syscalls.pxd's C calls; sources: sock_syscalls.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from shiftroute.engine.endpoint_link import WRITE_HIGH, EndpointLink, RelayPeer, RelayUpstream, hub_for

DEADLINE = 10.0


class Peer(RelayPeer):
    """Records what the link reports, and wakes the test on each report."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.data = bytearray()
        self.changed = asyncio.Event()

    def _note(self, event: Any) -> None:
        self.events.append(event)
        self.changed.set()

    def relay_data(self, data: bytes) -> None:
        self.data += data
        self._note("data")

    def relay_eof(self) -> None:
        self._note("eof")

    def relay_closed(self) -> None:
        self._note("closed")

    def relay_paused(self, paused: bool) -> None:
        self._note(("paused", paused))

    def link_connected(self, link: RelayUpstream) -> None:
        self._note("connected")

    def link_failed(self, exc: OSError) -> None:
        self._note(exc)

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not check():
                self.changed.clear()
                await self.changed.wait()


class Endpoint(asyncio.Protocol):
    """The endpoint: records what arrives and whether its peer half-closed."""

    def __init__(self, served: list[Endpoint]) -> None:
        served.append(self)
        self.received = bytearray()
        self.eof = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> bool:
        self.eof.set()
        return True


def run(test: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(asyncio.wait_for(test(), DEADLINE * 3))


async def _endpoint() -> tuple[asyncio.Server, int, list[Endpoint]]:
    served: list[Endpoint] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Endpoint(served), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], served


async def _served(served: list[Endpoint], count: int = 1) -> Endpoint:
    """The `count`-th connection the endpoint accepted, once it has (bounded wait)."""
    async with asyncio.timeout(DEADLINE):
        while len(served) < count:
            await asyncio.sleep(0.01)
    endpoint = served[count - 1]
    assert endpoint.transport is not None
    return endpoint


async def _connected(peer: Peer, port: int) -> EndpointLink:
    link = EndpointLink(peer, hub_for(asyncio.get_running_loop()))
    assert link.connect("127.0.0.1", port) is True
    await peer.until(lambda: "connected" in peer.events)
    return link


def test_relays_both_ways_and_passes_half_closes_on() -> None:
    async def test() -> None:
        server, port, served = await _endpoint()
        peer = Peer()
        link = await _connected(peer, port)
        link.write(b"client hello")
        async with asyncio.timeout(DEADLINE):
            while not served or bytes(served[0].received) != b"client hello":
                await asyncio.sleep(0.01)
        endpoint = served[0]
        assert endpoint.transport is not None
        endpoint.transport.write(b"server hello")
        await peer.until(lambda: bytes(peer.data) == b"server hello")
        link.write_eof()  # the client half-closed: the endpoint reads EOF, and can still answer
        async with asyncio.timeout(DEADLINE):
            await endpoint.eof.wait()
        endpoint.transport.write(b"last words")
        endpoint.transport.write_eof()
        await peer.until(lambda: "eof" in peer.events)
        assert bytes(peer.data) == b"server hellolast words"
        assert "closed" not in peer.events  # an EOF is not a close: the peer decides
        link.close()
        assert link.closed and link.fileno() == -1
        server.close()

    run(test)


async def _accepted_by(listener: socket.socket) -> socket.socket:
    """The endpoint's side of the one connection made to `listener` (a plain listening socket, so that the
    test decides exactly what the endpoint sends, and how it ends)."""
    loop = asyncio.get_running_loop()
    conn, _ = await asyncio.wait_for(loop.sock_accept(listener), DEADLINE)
    return conn


@pytest.mark.parametrize("ending", ["fin", "reset"])
def test_the_last_bytes_and_the_end_that_came_together(ending: str) -> None:
    """The endpoint sends its last bytes and ends before the link reads (one event). With a FIN the short
    read is the end (relay_eof, no other recv); with a reset (EPOLLERR in the event) the bytes are
    relayed and then the loss, not a clean end."""

    async def test() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        peer = Peer()
        link = EndpointLink(peer, hub_for(asyncio.get_running_loop()))
        assert link.connect("127.0.0.1", listener.getsockname()[1]) is True
        endpoint = await _accepted_by(listener)
        await peer.until(lambda: "connected" in peer.events)
        endpoint.sendall(b"y" * 300)
        if ending == "fin":
            endpoint.shutdown(socket.SHUT_WR)
            await peer.until(lambda: "eof" in peer.events)
            await asyncio.sleep(0.05)
            assert peer.events == ["connected", "data", "eof"]
            assert bytes(peer.data) == b"y" * 300
            link.write(b"the client's answer")  # half-closed by the endpoint: the client can still send
            link.close()
            endpoint.settimeout(DEADLINE)
            assert endpoint.recv(100) == b"the client's answer"
        else:
            endpoint.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            endpoint.close()
            await peer.until(lambda: "closed" in peer.events)
            assert bytes(peer.data) == b"y" * 300
            assert "eof" not in peer.events
            assert link.closed
        endpoint.close()
        listener.close()

    run(test)


@pytest.mark.parametrize("first", [b"", b"client hello"], ids=["poll", "first-bytes"])
def test_a_refused_connect_is_reported_once(first: bytes) -> None:
    """Refused, whether the link asks with a zero-wait poll or learns it from sending its first bytes."""

    async def test() -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        peer = Peer()
        link = EndpointLink(peer, hub_for(asyncio.get_running_loop()))
        try:
            started = link.connect("127.0.0.1", port, first)
        except ConnectionRefusedError:
            return  # refused within connect(2) itself: the caller sees the OSError at once
        assert started
        await peer.until(lambda: bool(peer.events))
        await asyncio.sleep(0.05)
        assert len(peer.events) == 1 and isinstance(peer.events[0], ConnectionRefusedError)
        assert link.closed

    run(test)


def test_the_first_bytes_go_out_with_the_connect_and_before_later_writes() -> None:
    """connect(..., first): the relay's ClientHello is sent by the connect itself (loopback: at once, which
    also tells the link the connect has completed), then what the relay writes later follows it."""

    async def test() -> None:
        server, port, served = await _endpoint()
        peer = Peer()
        link = EndpointLink(peer, hub_for(asyncio.get_running_loop()))
        assert link.connect("127.0.0.1", port, b"client hello") is True
        await peer.until(lambda: "connected" in peer.events)
        link.write(b", then more")
        endpoint = await _served(served)
        async with asyncio.timeout(DEADLINE):
            while bytes(endpoint.received) != b"client hello, then more":
                await asyncio.sleep(0.01)
        assert peer.events == ["connected"]
        link.close()
        server.close()

    run(test)


class FailingPeer(Peer):
    """A peer whose code raises on the first piece it is given (a bug, say)."""

    def relay_data(self, data: bytes) -> None:
        raise RuntimeError("this peer fails on purpose")


def test_a_peer_that_raises_costs_only_its_own_link(caplog: pytest.LogCaptureFixture) -> None:
    """LinkHub: an exception from one link's events is logged and that link closed, its peer told
    (relay_closed); the other links of the batch still get their events (edge-triggered, they would not
    come again)."""

    async def test() -> None:
        server, port, served = await _endpoint()
        bad_peer, good_peer = FailingPeer(), Peer()
        bad = await _connected(bad_peer, port)
        good = await _connected(good_peer, port)
        bad_end, good_end = await _served(served, 1), await _served(served, 2)
        assert bad_end.transport is not None and good_end.transport is not None
        bad_end.transport.write(b"boom")
        good_end.transport.write(b"fine")
        await bad_peer.until(lambda: "closed" in bad_peer.events)
        await good_peer.until(lambda: bytes(good_peer.data) == b"fine")
        assert bad.closed and not good.closed
        good.close()
        server.close()

    with caplog.at_level(logging.ERROR, "shiftroute.engine"):
        run(test)
    assert "handling the events of" in caplog.text and "this peer fails on purpose" in caplog.text


def test_a_name_is_left_to_the_loop_and_a_bad_port_fails_at_once() -> None:
    async def test() -> None:
        link = EndpointLink(Peer(), hub_for(asyncio.get_running_loop()))
        assert link.connect("backend.example", 443) is False  # not numeric: create_connection resolves it
        assert link.fileno() == -1 and not link.closed
        assert link.connect("fe80::1%lo", 443) is False  # a scope id: not for inet_pton either

    run(test)


def test_back_pressure_pauses_the_client_and_everything_arrives_in_order() -> None:
    async def test() -> None:
        server, port, served = await _endpoint()
        peer = Peer()
        link = await _connected(peer, port)
        endpoint = await _served(served)
        assert endpoint.transport is not None
        endpoint.transport.pause_reading()  # the endpoint stops reading: the kernel buffers fill up
        sent = bytearray()
        piece = bytes(range(256)) * 256  # 64 KiB
        while ("paused", True) not in peer.events:
            assert len(sent) < 64 * 1024 * 1024, "no back-pressure after 64 MiB"
            link.write(piece)
            sent += piece
        assert link.buffered() > WRITE_HIGH
        link.write_eof()  # after what is pending
        endpoint.transport.resume_reading()
        await peer.until(lambda: ("paused", False) in peer.events)
        async with asyncio.timeout(DEADLINE):
            await endpoint.eof.wait()
        assert endpoint.received == sent
        link.abort()
        server.close()

    run(test)


def test_close_sends_what_is_pending_first_and_an_endpoint_reset_is_a_close() -> None:
    async def test() -> None:
        server, port, served = await _endpoint()
        peer = Peer()
        link = await _connected(peer, port)
        endpoint = await _served(served)
        assert endpoint.transport is not None
        endpoint.transport.pause_reading()
        piece = b"x" * 65536
        sent = 0
        while not link.buffered():
            link.write(piece)
            sent += len(piece)
        link.close()  # pending bytes go out first, then the socket closes
        endpoint.transport.resume_reading()
        async with asyncio.timeout(DEADLINE):
            await endpoint.eof.wait()
        assert len(endpoint.received) == sent and link.closed
        assert "closed" not in peer.events  # the peer closed it: nothing to report

        second = Peer()
        link = await _connected(second, port)
        reset = (await _served(served, 2)).transport
        assert reset is not None
        reset.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        reset.abort()  # linger 0: a reset
        await second.until(lambda: "closed" in second.events or "eof" in second.events)
        link.write(b"after the reset")  # fails: reported as a close if the read did not already
        await second.until(lambda: "closed" in second.events)
        assert link.closed
        server.close()

    run(test)


@pytest.mark.parametrize("count", [3, 200])
def test_many_links_share_one_hub(count: int) -> None:
    async def test() -> None:
        server, port, served = await _endpoint()
        peers = [Peer() for _ in range(count)]
        links = [EndpointLink(p, hub_for(asyncio.get_running_loop())) for p in peers]
        for link in links:
            assert link.connect("127.0.0.1", port)
        for i, (peer, link) in enumerate(zip(peers, links, strict=True)):
            await peer.until(lambda peer=peer: "connected" in peer.events)  # type: ignore[misc]
            link.write(f"{i};".encode())
        async with asyncio.timeout(DEADLINE):
            while sum(len(e.received) for e in served) < sum(len(f"{i};") for i in range(count)):
                await asyncio.sleep(0.01)
        assert sorted(bytes(e.received) for e in served) == sorted(f"{i};".encode() for i in range(count))
        for endpoint in served:
            assert endpoint.transport is not None
            endpoint.transport.write(bytes(endpoint.received))  # each answers what it got
        for i, peer in enumerate(peers):
            await peer.until(lambda peer=peer, i=i: bytes(peer.data) == f"{i};".encode())  # type: ignore[misc]
        for link in links:
            link.abort()
        assert not hub_for(asyncio.get_running_loop()).links
        server.close()

    run(test)
