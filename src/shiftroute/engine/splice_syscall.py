"""splice(2) on non-blocking descriptors, for the spliced passthrough relay (splice.py).

This module is never compiled itself. Its `.pxd` holds a C twin of `splice_nonblocking` (an inline function
that calls splice(2) directly), and the compiled splice module cimports it, numpy-style: splice.py says
`splice_syscall.splice_nonblocking(...)`, which is this Python function when splice.py runs as Python and
the C function when it is compiled. The C twin skips what `os.splice` does per call (argument parsing, and
releasing and retaking the interpreter lock around a call that never blocks: the descriptors are
non-blocking), a few hundred nanoseconds on each of the four splices a relayed request and its answer take.
Both raise OSError (BlockingIOError for EAGAIN) and return the bytes moved, 0 at end of stream.
"""

from __future__ import annotations

import os

# SPLICE_F_MOVE: move pages rather than copy where the kernel can; SPLICE_F_NONBLOCK: the pipe end never
# blocks (the sockets are non-blocking already). The .pxd uses the same two flags.
FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


def splice_nonblocking(src_fd: int, dst_fd: int, count: int) -> int:
    """Move up to `count` bytes from `src_fd` to `dst_fd` (one of them a pipe)."""
    return os.splice(src_fd, dst_fd, count, None, None, FLAGS)
