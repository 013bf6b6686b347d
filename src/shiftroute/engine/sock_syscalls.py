"""The system calls of the sockets the router reads and writes itself (engine/link_hub.py): one epoll set,
and non-blocking TCP sockets accepted or connected, read, written, shut down and closed by descriptor
number.

This module is never compiled itself. Its `.pxd` holds C twins of these functions (inline functions that
make the calls directly), and the compiled endpoint_link module cimports it, as splice_syscall does for
splice.py: `sock_syscalls.recv_bytes(...)` there is this Python function when endpoint_link.py runs as
Python, and the C function when it is compiled. Keep the two in step: same arguments, same results, the
same OSError subclasses (the C twin raises through PyErr_SetFromErrno, which picks them by errno).

Results, in both:
- `tcp_connect` returns the new descriptor (connected, or connecting: wait for EPOLLOUT, then read
  `socket_error`), -1 when `address` is not a numeric IPv4 or IPv6 address (the caller resolves names
  another way), and raises OSError when the connect fails at once.
- `connected_now` returns 1 when the connect has already completed, 0 while it is in progress, and raises
  OSError when it has failed. On loopback the handshake completes within connect(2), which still returns
  EINPROGRESS on a non-blocking socket: asked at once, the answer saves waiting for EPOLLOUT.
- `recv_bytes` returns the bytes read, b"" at end of stream, None when nothing is there (EAGAIN).
- `send_bytes` returns how many bytes of `data[offset:]` the kernel took, 0 when it took none (EAGAIN).
- `accept_peer` returns `(descriptor, peer address)` for a connection accepted on the listening socket
  (non-blocking, the address as asyncio gives it: `(host, port)`, or for IPv6 `(host, port, flowinfo,
  scope_id)`), None when none waits (EAGAIN), and raises OSError when accept(2) fails. It sets no option:
  Linux gives an accepted socket the listening socket's options (the new socket is a clone of it,
  inet_csk_clone_lock), so TCP_NODELAY is set once on the listening socket (client_link.HubServer.bind)
  instead of by a setsockopt(2) per connection.
- `epoll_poll` waits for nothing (timeout 0) and returns how many events it read, at most MAX_EVENTS; event
  `i` is `ready_fd(i)`, `ready_events(i)`, until the next call.
"""

from __future__ import annotations

import errno
import os
import select
import socket

MAX_EVENTS = 64
EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLERR = select.EPOLLERR
EPOLLHUP = select.EPOLLHUP
EPOLLET = select.EPOLLET
EPOLLRDHUP = select.EPOLLRDHUP

_epolls: dict[int, select.epoll] = {}
_ready: list[tuple[int, int]] = []


def epoll_open() -> int:
    ep = select.epoll()
    _epolls[ep.fileno()] = ep
    return ep.fileno()


def epoll_close(epfd: int) -> None:
    _epolls.pop(epfd).close()


def epoll_add(epfd: int, fd: int, events: int) -> None:
    _epolls[epfd].register(fd, events)


def epoll_modify(epfd: int, fd: int, events: int) -> None:
    _epolls[epfd].modify(fd, events)


def epoll_remove(epfd: int, fd: int) -> None:
    _epolls[epfd].unregister(fd)


def epoll_poll(epfd: int) -> int:
    _ready[:] = _epolls[epfd].poll(0, MAX_EVENTS)
    return len(_ready)


def ready_fd(i: int) -> int:
    return _ready[i][0]


def ready_events(i: int) -> int:
    return _ready[i][1]


def tcp_connect(address: str, port: int) -> int:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, address)
        except OSError:
            continue
        break
    else:
        return -1
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((address, port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, os.strerror(code))
    except BaseException:
        sock.close()
        raise
    return sock.detach()


def connected_now(fd: int) -> int:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    ready = poller.poll(0)
    revents = ready[0][1] if ready else 0
    if revents == select.POLLOUT:
        return 1
    if not revents & (select.POLLERR | select.POLLHUP):
        return 0
    code = socket_error(fd)
    if code == 0:
        return 1
    raise OSError(code, os.strerror(code))


def accept_peer(fd: int) -> tuple[int, tuple[object, ...]] | None:
    listening = socket.socket(fileno=fd)
    try:
        conn, peer = listening.accept()
    except BlockingIOError:
        return None
    finally:
        listening.detach()
    conn.setblocking(False)
    return conn.detach(), tuple(peer)


def socket_error(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    finally:
        sock.detach()


def recv_bytes(fd: int, size: int) -> bytes | None:
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None


def send_bytes(fd: int, data: bytes, offset: int) -> int:
    sock = socket.socket(fileno=fd)
    try:
        return sock.send(memoryview(data)[offset:], socket.MSG_NOSIGNAL)
    except BlockingIOError:
        return 0
    finally:
        sock.detach()


def shutdown_write(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    try:
        sock.shutdown(socket.SHUT_WR)
    finally:
        sock.detach()


def close_fd(fd: int) -> None:
    os.close(fd)
