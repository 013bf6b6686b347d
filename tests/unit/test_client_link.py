"""engine/client_link.py: the HTTPS listener's sockets, accepted, read and written by the router in the
loop's LinkHub. Real sockets on 127.0.0.1 on uvloop: a HubServer accepts for a recording protocol, and
asyncio stream clients (or plain sockets) connect to it. Runs in whichever build is installed (compiled:
sock_syscalls.pxd's C calls; sources: sock_syscalls.py)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from shiftroute.engine.client_link import WRITE_HIGH, ClientLink, HubServer
from shiftroute.engine.link_hub import LinkProtocol

DEADLINE = 10.0


class Recorder(LinkProtocol):
    """The protocol: records each call, and wakes the test on each. A LinkProtocol, as a ClientLink's
    protocol must be (compiled, its methods are then Python overrides of the base's C methods)."""

    def __init__(self, made: list[Recorder], keep_open_on_eof: bool = True) -> None:
        made.append(self)
        self.keep_open_on_eof = keep_open_on_eof
        self.events: list[Any] = []
        self.data = bytearray()
        self.transport: Any = None
        self.changed = asyncio.Event()
        self.fail_on_data = False

    def _note(self, event: Any) -> None:
        self.events.append(event)
        self.changed.set()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._note("made")

    def data_received(self, data: bytes) -> None:
        if self.fail_on_data:
            raise RuntimeError("this protocol fails on purpose")
        self.data += data
        self._note("data")

    def eof_received(self) -> bool:
        self._note("eof")
        return self.keep_open_on_eof

    def connection_lost(self, exc: Exception | None) -> None:
        self._note(("lost", exc))

    def pause_writing(self) -> None:
        self._note("pause")

    def resume_writing(self) -> None:
        self._note("resume")

    @property
    def lost(self) -> list[Any]:
        return [event for event in self.events if isinstance(event, tuple) and event[0] == "lost"]

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not check():
                self.changed.clear()
                await self.changed.wait()


def run(test: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(asyncio.wait_for(test(), DEADLINE * 3))


async def _serving(keep_open_on_eof: bool = True) -> tuple[HubServer, int, list[Recorder]]:
    made: list[Recorder] = []
    server = HubServer(asyncio.get_running_loop(), lambda: Recorder(made, keep_open_on_eof))
    server.bind("127.0.0.1", 0, 100)
    await server.start_serving()
    return server, server.sockets[0].getsockname()[1], made


async def _accepted(made: list[Recorder], count: int = 1) -> Recorder:
    """The `count`-th connection the server accepted, once it has (bounded wait)."""
    async with asyncio.timeout(DEADLINE):
        while len(made) < count:
            await asyncio.sleep(0.01)
    return made[count - 1]


def test_listens_only_from_start_serving_and_tells_both_addresses() -> None:
    async def test() -> None:
        made: list[Recorder] = []
        server = HubServer(asyncio.get_running_loop(), lambda: Recorder(made))
        server.bind("127.0.0.1", 0, 100)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionRefusedError):  # bound, not listening: the router has no routes yet
            await asyncio.open_connection("127.0.0.1", port)
        await server.start_serving()
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = await _accepted(made)
        assert isinstance(conn.transport, ClientLink)
        assert conn.transport.get_extra_info("peername") == writer.get_extra_info("sockname")
        assert conn.transport.get_extra_info("sockname") == ("127.0.0.1", port)
        assert conn.transport.get_extra_info("no such thing", "default") == "default"
        writer.close()
        await conn.until(lambda: "eof" in conn.events)  # kept open (eof_received said so) until closed
        conn.transport.close()
        await conn.until(lambda: bool(conn.lost))
        server.close()

    run(test)


def test_bytes_both_ways_half_close_and_one_connection_lost() -> None:
    async def test() -> None:
        server, port, made = await _serving()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"client hello")
        conn = await _accepted(made)
        await conn.until(lambda: bytes(conn.data) == b"client hello")
        conn.transport.write(b"server hello")
        assert await asyncio.wait_for(reader.readexactly(12), DEADLINE) == b"server hello"
        writer.write_eof()  # the client half-closes: the protocol keeps the connection open to answer
        await conn.until(lambda: "eof" in conn.events)
        conn.transport.writelines([b"last ", b"words"])
        conn.transport.write_eof()
        assert await asyncio.wait_for(reader.read(), DEADLINE) == b"last words"  # then the EOF
        assert not conn.lost
        conn.transport.close()
        assert conn.transport.is_closing()
        assert not conn.lost  # reported after the call, not within it
        await conn.until(lambda: bool(conn.lost))
        await asyncio.sleep(0.05)
        assert conn.lost == [("lost", None)]
        writer.close()
        server.close()

    run(test)


@pytest.mark.parametrize("size", [100_000, 300], ids=["more-than-a-read", "one-short-read"])
def test_bytes_and_the_end_that_came_together_are_all_read(size: int) -> None:
    """Edge-triggered: the bytes and the client's FIN are all in the socket before the first read, and
    raise one event between them. Every byte is read, then the end, once: after more than one read's worth,
    and after a single short read (which, with the FIN already in, is the end without another recv)."""

    async def test() -> None:
        server, port, made = await _serving()
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"x" * size)  # before the loop runs again: the server has read nothing yet
        client.shutdown(socket.SHUT_WR)
        conn = await _accepted(made)
        await conn.until(lambda: "eof" in conn.events)
        assert bytes(conn.data) == b"x" * size
        await asyncio.sleep(0.05)
        assert conn.events.count("eof") == 1 and conn.events[-1] == "eof" and not conn.lost
        conn.transport.write(b"answer after the client's end")  # half-closed: the router can still answer
        conn.transport.close()
        await conn.until(lambda: bool(conn.lost))
        assert conn.lost == [("lost", None)]
        client.settimeout(DEADLINE)
        assert client.recv(100) == b"answer after the client's end"
        client.close()
        server.close()

    run(test)


def test_eof_received_false_closes_the_connection() -> None:
    async def test() -> None:
        server, port, made = await _serving(keep_open_on_eof=False)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write_eof()
        conn = await _accepted(made)
        await conn.until(lambda: bool(conn.lost))
        assert conn.events == ["made", "eof", ("lost", None)]
        assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
        writer.close()
        server.close()

    run(test)


def test_back_pressure_pauses_and_resumes_the_protocol_and_keeps_the_order() -> None:
    async def test() -> None:
        server, port, made = await _serving()
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small buffers: a few writes fill them
        client.connect(("127.0.0.1", port))
        conn = await _accepted(made)
        link = conn.transport
        own = link.get_extra_info("socket")
        own.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        own.close()
        chunk = bytes(range(256)) * 256  # 64 KiB
        sent = bytearray()
        for _ in range(64):  # at most 4 MiB: the client reads nothing, so the kernel's buffers fill
            link.write(chunk)
            sent += chunk
            if "pause" in conn.events:
                break
        assert "pause" in conn.events
        assert link.get_write_buffer_size() > WRITE_HIGH
        link.close()  # with bytes waiting: they go out first, then the socket closes
        assert not conn.lost
        received = bytearray()
        client.setblocking(False)
        async with asyncio.timeout(DEADLINE):
            while True:
                try:
                    piece = client.recv(1 << 16)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                    continue
                if not piece:
                    break
                received += piece
        assert received == sent
        await conn.until(lambda: bool(conn.lost))
        assert conn.events.index("pause") < conn.events.index("resume") < conn.events.index(("lost", None))
        client.close()
        server.close()

    run(test)


def test_abort_drops_what_waits_and_reports_the_loss() -> None:
    async def test() -> None:
        server, port, made = await _serving()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = await _accepted(made)
        conn.transport.abort()
        conn.transport.abort()  # twice: once reported
        await conn.until(lambda: bool(conn.lost))
        assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
        await asyncio.sleep(0.05)
        assert conn.lost == [("lost", None)]
        conn.transport.write(b"after the end")  # ignored, as by a closed transport
        writer.close()
        server.close()

    run(test)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a client that crashed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_reset_met_by_a_read_is_lost_with_its_error() -> None:
    async def test() -> None:
        server, port, made = await _serving()
        client = socket.create_connection(("127.0.0.1", port))
        conn = await _accepted(made)
        _reset(client)
        await conn.until(lambda: bool(conn.lost))
        assert isinstance(conn.lost[0][1], ConnectionResetError)
        server.close()

    run(test)


def test_bytes_then_a_reset_are_read_then_lost_with_the_error() -> None:
    """The bytes and a reset arrive before the first read (one event: EPOLLIN, EPOLLRDHUP, EPOLLHUP and
    EPOLLERR): the short read is not taken for a clean end; the bytes are delivered, then the reset."""

    async def test() -> None:
        server, port, made = await _serving()
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"x" * 300)
        _reset(client)
        conn = await _accepted(made)
        await conn.until(lambda: bool(conn.lost))
        assert bytes(conn.data) == b"x" * 300
        assert "eof" not in conn.events
        assert isinstance(conn.lost[0][1], ConnectionResetError)
        server.close()

    run(test)


def test_a_reset_met_by_a_write_is_reported_after_the_write() -> None:
    async def test() -> None:
        server, port, made = await _serving()
        client = socket.create_connection(("127.0.0.1", port))
        conn = await _accepted(made)
        conn.transport.pause_reading()  # the reset is not read: the write meets it
        _reset(client)
        await asyncio.sleep(0.05)  # loopback delivers the reset at once; this is margin
        conn.transport.write(b"to nobody")
        assert conn.transport.is_closing()
        assert not conn.lost  # never from within the write
        await conn.until(lambda: bool(conn.lost))
        assert isinstance(conn.lost[0][1], (ConnectionResetError, BrokenPipeError))
        server.close()

    run(test)


def test_a_failing_protocol_costs_only_its_own_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def test() -> None:
        server, port, made = await _serving()
        _, bad_writer = await asyncio.open_connection("127.0.0.1", port)
        bad = await _accepted(made)
        bad.fail_on_data = True
        good_reader, good_writer = await asyncio.open_connection("127.0.0.1", port)
        good = await _accepted(made, 2)
        bad_writer.write(b"boom")
        await bad.until(lambda: bool(bad.lost))
        good_writer.write(b"ping")
        await good.until(lambda: bytes(good.data) == b"ping")
        good.transport.write(b"pong")
        assert await asyncio.wait_for(good_reader.readexactly(4), DEADLINE) == b"pong"
        bad_writer.close()
        good_writer.close()
        server.close()

    with caplog.at_level(logging.ERROR, "shiftroute.engine"):
        run(test)
    assert "protocol.data_received() failed" in caplog.text
    assert "this protocol fails on purpose" in caplog.text


def test_accepted_connections_send_small_writes_at_once() -> None:
    """TCP_NODELAY, as uvloop's accepted connections have it: set on the listening socket, which each
    accepted socket inherits (no setsockopt per connection)."""

    async def test() -> None:
        server, port, made = await _serving()
        assert server.sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = await _accepted(made)
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        sock.close()
        conn.transport.close()
        await conn.until(lambda: bool(conn.lost))
        writer.close()
        server.close()

    run(test)


def test_the_socket_extra_is_a_duplicate_for_splice() -> None:
    async def test() -> None:
        server, port, made = await _serving()
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = await _accepted(made)
        sock = conn.transport.get_extra_info("socket")
        assert sock.getpeername() == writer.get_extra_info("sockname")
        sock.close()  # its own descriptor: the connection goes on
        writer.write(b"still here")
        await conn.until(lambda: bytes(conn.data) == b"still here")
        conn.transport.close()
        await conn.until(lambda: bool(conn.lost))
        writer.close()
        server.close()

    run(test)


def test_close_stops_accepting_and_open_connections_go_on() -> None:
    async def test() -> None:
        server, port, made = await _serving()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = await _accepted(made)
        server.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"after close")
        await conn.until(lambda: bytes(conn.data) == b"after close")
        conn.transport.write(b"answered")
        assert await asyncio.wait_for(reader.readexactly(8), DEADLINE) == b"answered"
        writer.close()

    run(test)


def test_bind_error_names_the_address_and_leaves_nothing_bound() -> None:
    async def test() -> None:
        server = HubServer(asyncio.get_running_loop(), lambda: None)
        with pytest.raises(OSError) as raised:
            server.bind("192.0.2.1", 0, 100)  # TEST-NET-1: not an address of this machine
        assert raised.value.errno == errno.EADDRNOTAVAIL
        assert "192.0.2.1" in str(raised.value)
        assert server.sockets == []

    run(test)


def test_a_family_the_kernel_lacks_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """As create_server: an address whose family cannot be made (IPv6 disabled at boot) is skipped, and the
    others are bound; with none left, the error says so. Mocked: getaddrinfo's answer (a kernel without
    IPv6 cannot be had here); family 255 exists nowhere, so socket() refuses it for real."""
    real = socket.getaddrinfo

    def with_unknown_family(*args: Any, **kwargs: Any) -> list[Any]:
        answer = real(*args, **kwargs)
        return [(255, socket.SOCK_STREAM, 0, "", ("::", 0)), *answer]

    async def test() -> None:
        monkeypatch.setattr(socket, "getaddrinfo", with_unknown_family)
        server = HubServer(asyncio.get_running_loop(), lambda: Recorder([]))
        server.bind("127.0.0.1", 0, 100)
        assert [sock.family for sock in server.sockets] == [socket.AF_INET]
        server.close()
        monkeypatch.setattr(
            socket, "getaddrinfo", lambda *a, **k: [(255, socket.SOCK_STREAM, 0, "", ("::", 0))]
        )
        lonely = HubServer(asyncio.get_running_loop(), lambda: Recorder([]))
        with pytest.raises(OSError) as raised:
            lonely.bind(None, 0, 100)
        assert raised.value.errno == errno.EAFNOSUPPORT
        assert "no socket could be made for *:0" in str(raised.value)

    run(test)


def test_out_of_descriptors_pauses_accepting_then_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """accept(2) fails with EMFILE while every descriptor the limit allows is taken: the server logs it,
    stops accepting for a moment (no busy loop), and accepts the waiting connection once descriptors are
    free again."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []

    async def test() -> None:
        server, port, made = await _serving()
        client = socket.create_connection(("127.0.0.1", port))  # waits in the kernel's accept queue
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, hard))
        try:
            while True:  # take every descriptor left, so the accept that follows fails
                try:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
                except OSError as exc:
                    assert exc.errno == errno.EMFILE
                    break
            async with asyncio.timeout(DEADLINE):
                while "accepting paused" not in caplog.text:
                    await asyncio.sleep(0.01)
            assert not made
        finally:
            for fd in fillers:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        conn = await _accepted(made)
        assert conn.transport.get_extra_info("peername") == client.getsockname()
        client.close()
        server.close()

    with caplog.at_level(logging.WARNING, "shiftroute.engine"):
        run(test)
