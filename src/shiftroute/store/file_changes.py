"""Sleep until a file changes: Linux inotify through ctypes, for the embedded store's watch.

The SQLite store's watch used to poll every 10 ms from its own thread. On a busy router each poll took
the interpreter lock from the event loop several times (sqlite3 releases it around every call): on the
full-handshake passthrough benchmark that was ~25 µs of the router's CPU per connection, about 9 %
(BENCHMARKS.md, work log). With inotify the watch sleeps until the store's files are written, and an
idle or busy router with an unchanged store does not wake at all.

Only the store's own files are watched for writes: a watch on their directory would also wake for every
write to any other file there (a log written per request beside the store cost the router ~9 µs per
request that way, `BENCHMARKS.md`). The directory is watched for names only (a file created, replaced or
removed), which is how a WAL file created later, or a store file replaced, gets its own watch.

Where inotify is missing (not Linux, no libc symbol, a watch limit reached) `FileChanges.watch` returns
None and the caller keeps polling.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import struct
import weakref
from pathlib import Path

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_MOVED_FROM = 0x00000040
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000  # the watch is gone (its file was removed or replaced)
_FILE_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE  # on each watched file: its content changed
_DIR_MASK = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE  # on the directory: names come and go
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of NUL-padded name


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class FileChanges:
    """Changes to the named files of one directory (created, written, replaced, removed)."""

    def __init__(
        self, libc: ctypes.CDLL, inotify_fd: int, directory: Path, dir_watch: int, names: frozenset[str]
    ) -> None:
        self._libc = libc
        self._fd = inotify_fd
        self._directory = directory
        self._dir_watch = dir_watch
        self._names = names
        self._file_watches: set[int] = set()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_all, [inotify_fd, self._wake_read, self._wake_write])
        for name in names:  # after the directory's watch: a file created from now on is seen either way
            self._watch_file(name)

    @classmethod
    def watch(cls, directory: Path, names: set[str]) -> FileChanges | None:
        libc = _libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        dir_watch = libc.inotify_add_watch(fd, os.fsencode(directory), _DIR_MASK)
        if dir_watch < 0:
            os.close(fd)
            return None
        return cls(libc, fd, directory, dir_watch, frozenset(names))

    def _watch_file(self, name: str) -> None:
        """Watch one of the files for writes, if it exists (a missing one is watched once it is created).
        Adding a watch on a file already watched returns the same descriptor."""
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(self._directory / name), _FILE_MASK)
        if wd >= 0:
            self._file_watches.add(wd)

    def wait(self, timeout: float) -> bool:
        """Block until one of the files changed, close() was called, or `timeout` s passed; True if a
        file changed (or events were lost, which counts as a change)."""
        if self._closed:
            return False
        ready, _, _ = select.select([self._fd, self._wake_read], [], [], timeout)
        changed = False
        if self._fd in ready:
            changed = self._drain()
        return changed

    def _drain(self) -> bool:
        changed = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except (BlockingIOError, OSError):
                return changed
            if not data:
                return changed
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    changed = True
                    for watched in self._names:  # events were lost: make sure every file is watched
                        self._watch_file(watched)
                elif wd == self._dir_watch:
                    decoded = os.fsdecode(name)
                    if decoded in self._names:
                        changed = True
                        if mask & (IN_CREATE | IN_MOVED_TO):
                            self._watch_file(decoded)  # a new file under that name (a new inode)
                elif wd in self._file_watches:
                    if mask & IN_IGNORED:
                        self._file_watches.discard(wd)  # its file is gone; a new one is watched on creation
                    else:
                        changed = True

    def close(self) -> None:
        """Wake a waiting thread; the descriptors are closed once nobody uses this object any more."""
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")
