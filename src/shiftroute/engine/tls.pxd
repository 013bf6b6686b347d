# Cython declarations for tls.py, read when setup.py compiles it (ignored by Python): the classes
# below become extension types whose attributes live in the object's C struct instead of a dictionary or
# slots, so compiled code reads them directly. Every attribute a class sets must be declared here (the
# compiled build raises AttributeError otherwise; the suite runs against the compiled build). `public`
# keeps every attribute visible to Python code as before.
cimport shiftroute.engine.tls_direct as tls_direct


cdef class TlsLayer:
    cdef public object _in, _out, _pending, _read, _write, obj
    cdef public bint handshake_done
    # The `SSL *` for tls_direct's C calls, 0 when records go through `ssl` (readonly: a wrong value would
    # be dereferenced).
    cdef readonly size_t _handle

    # Called for every record both ways, by the listeners and the upstream connections: cpdef, so those
    # typed callers call them in C rather than through a method lookup (Python sees them as before).
    cpdef tuple feed(self, bytes data)
    cpdef bytes encrypt(self, bytes data)
