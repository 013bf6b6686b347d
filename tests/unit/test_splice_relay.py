"""The spliced passthrough relay (shiftroute.engine.splice) over real socket pairs, and the splice(2) call
it makes (splice_syscall: a Python function, and a C twin in the compiled build; the suite runs the
compiled build, so the relay tests below exercise the C twin's results and errors). The relay runs on
uvloop, as in the router."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
import uvloop

from shiftroute.engine import splice, splice_syscall


def test_python_splice_moves_bytes_then_reports_eof_and_eagain() -> None:
    a, b = socket.socketpair()
    pipe_r, pipe_w = os.pipe2(os.O_NONBLOCK)
    try:
        b.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing to read yet
            splice_syscall.splice_nonblocking(b.fileno(), pipe_w, 1024)
        a.sendall(b"hello")
        assert splice_syscall.splice_nonblocking(b.fileno(), pipe_w, 1024) == 5
        assert os.read(pipe_r, 16) == b"hello"
        a.shutdown(socket.SHUT_WR)
        assert splice_syscall.splice_nonblocking(b.fileno(), pipe_w, 1024) == 0  # end of stream
    finally:
        for fd in (pipe_r, pipe_w):
            os.close(fd)
        a.close()
        b.close()


async def _relay_pair() -> tuple[
    socket.socket, socket.socket, splice.SpliceRelay, asyncio.Future[bool], list[socket.socket]
]:
    """client <-> [router's client end | relay | router's upstream end] <-> upstream."""
    loop = asyncio.get_running_loop()
    client, router_client = socket.socketpair()
    router_upstream, upstream = socket.socketpair()
    for sock in (client, router_client, router_upstream, upstream):
        sock.setblocking(False)
    done: asyncio.Future[bool] = loop.create_future()
    relay = splice.SpliceRelay(
        loop, router_client.fileno(), router_upstream.fileno(), lambda error: done.set_result(error)
    )
    # The relay works on duplicates of the router's two descriptors, as it does of the transports' sockets.
    return client, upstream, relay, done, [router_client, router_upstream]


async def _read_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    while len(got) < size:
        piece = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), deadline)
        assert piece, f"end of stream after {len(got)} of {size} bytes"
        got += piece
    return bytes(got)


def test_relay_moves_a_large_body_past_a_full_destination_and_passes_the_half_close_on() -> None:
    uvloop.run(_large_body_and_half_close())


async def _large_body_and_half_close() -> None:
    loop = asyncio.get_running_loop()
    client, upstream, relay, done, originals = await _relay_pair()
    body = os.urandom(4 << 20)  # far more than the socket buffers hold: the relay must wait to write
    try:
        sending = loop.create_task(loop.sock_sendall(client, body))
        await asyncio.sleep(0.2)  # let the destination fill up before anything reads it
        assert await _read_exactly(upstream, len(body), 10) == body
        await asyncio.wait_for(sending, 10)
        client.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(loop.sock_recv(upstream, 16), 5) == b""  # the half-close arrived
        await loop.sock_sendall(upstream, b"answer")
        assert await _read_exactly(client, 6, 5) == b"answer"
        upstream.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(done, 5) is False  # both directions ended cleanly
        assert relay.up.moved == len(body) and relay.down.moved == 6
    finally:
        relay.close(error=False)
        for sock in [client, upstream, *originals]:
            sock.close()


def test_relay_ends_with_an_error_when_a_side_resets() -> None:
    uvloop.run(_reset())


async def _reset() -> None:
    loop = asyncio.get_running_loop()
    client, upstream, relay, done, originals = await _relay_pair()
    try:
        await loop.sock_sendall(client, b"x" * 1000)
        assert await _read_exactly(upstream, 1000, 5) == b"x" * 1000
        # A reset (SO_LINGER 0) of the upstream: the next splice into it fails with an OSError.
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        upstream.close()
        for _ in range(50):
            if done.done():
                break
            try:
                await loop.sock_sendall(client, b"y" * 1000)
            except OSError:
                break
            await asyncio.sleep(0.02)
        assert await asyncio.wait_for(done, 5) is True
        assert relay.closed
    finally:
        relay.close(error=True)
        for sock in [client, upstream, *originals]:
            sock.close()
