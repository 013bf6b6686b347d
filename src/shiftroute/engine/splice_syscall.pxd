# The C twin of splice_syscall.py's `splice_nonblocking`, for compiled modules that cimport this module
# (splice.pxd): the same call, made directly. splice_syscall.py itself is not compiled (a compiled module
# cannot both define the function in its .py and here); see its docstring. Keep the two in step: same
# flags, same result, OSError with errno on failure (PyErr_SetFromErrno picks BlockingIOError for EAGAIN,
# as os.splice does).
from cpython.exc cimport PyErr_SetFromErrno


cdef extern from "fcntl.h":
    # glibc declares splice(2) under _GNU_SOURCE, which Python.h defines.
    enum:
        SPLICE_F_MOVE
        SPLICE_F_NONBLOCK
    ssize_t _splice "splice" (int fd_in, void* off_in, int fd_out, void* off_out, size_t length,
                              unsigned int flags)


cdef inline Py_ssize_t splice_nonblocking(int src_fd, int dst_fd, Py_ssize_t count) except -1:
    cdef ssize_t moved = _splice(src_fd, NULL, dst_fd, NULL, <size_t>count, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
    if moved < 0:
        PyErr_SetFromErrno(OSError)
        return -1
    return moved
