# Cython declarations for outbox.py, read when setup.py compiles it (ignored by Python): WriteBatch and
# Outbox become extension types, and the connections that cimport them (listeners.pxd, upstream.pxd) call
# `write` and `flush` in C. Every attribute a class sets must be declared here (the compiled build raises
# AttributeError otherwise). `public` keeps every attribute visible to Python code.


cdef class WriteBatch:
    cdef public list _boxes
    cdef public object _scheduled_on

    cpdef add(self, Outbox box)


cdef class Outbox:
    cdef public object transport, loop
    cdef public WriteBatch _batch
    cdef public list _pieces
    cdef public Py_ssize_t _size

    cpdef write(self, bytes data)
    cpdef flush(self)
