# Cython declarations for splice.py, read when setup.py compiles it (ignored by Python): the classes below
# become extension types whose attributes live in the object's C struct, so the per-piece bookkeeping of
# a spliced relay (file descriptors, byte counts) is read and written directly. Every attribute a class
# sets must be declared here (the compiled build raises AttributeError otherwise). `public` keeps every
# attribute visible to Python code as before. `splice_syscall` is cimported as well as imported, so
# `splice_syscall.splice_nonblocking(...)` in the compiled relay is its C twin (splice_syscall.pxd).
from shiftroute.engine cimport splice_syscall


cdef class _Direction:
    cdef public object src, dst
    cdef public int src_fd, dst_fd, pipe_r, pipe_w
    cdef public Py_ssize_t pending, moved
    cdef public bint eof, done


cdef class SpliceRelay:
    cdef public object loop, on_done, _client, _upstream
    cdef public _Direction up, down
    cdef public bint closed
