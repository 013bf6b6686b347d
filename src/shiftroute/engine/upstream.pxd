# Cython declarations for upstream.py, read when setup.py compiles it (ignored by Python): the classes
# below become extension types whose attributes live in the object's C struct instead of slots, so
# compiled code (this module, and the sessions that cimport them: exchange.pxd, context.pxd) reads them
# directly. Every attribute a class sets must be declared here (the compiled build raises AttributeError
# otherwise; the suite runs against the compiled build). `public` keeps every attribute visible to Python
# code as before.
#
# An extension type cannot subclass asyncio.Protocol (a Python class): UpstreamConnection does not, in
# either build. uvloop and asyncio take any object with the protocol's methods (uvloop only asks whether
# it has `get_buffer`, for BufferedProtocol); upstream.py casts it for mypy where a Protocol is expected.
from shiftroute.engine.outbox cimport Outbox, WriteBatch
from shiftroute.engine.tls cimport TlsLayer


cdef class UpstreamConnection:
    cdef public object _handshake, _loop, callbacks, key, owner, parser, transport
    cdef public Pool pool
    cdef public TlsLayer tls
    cdef public Outbox outbox
    cdef public double parked_at
    cdef public bint closed, paused, session_saved

    # The small methods the sessions call per request: cpdef, so a typed caller calls them in C (no
    # method lookup); Python callers see them as before.
    cpdef send(self, bytes data)
    cpdef pause_reading(self)
    cpdef resume_reading(self)
    cpdef close(self)
    cpdef park(self)
    cpdef unpark(self, owner)


cdef class Pool:
    cdef public dict _idle, _sessions  # typed: `.get` and `.setdefault` are C dict calls
    cdef public object _sweeper
    cdef public WriteBatch writes
    cdef public Py_ssize_t open

    cpdef UpstreamConnection take(self, key, owner)
    cpdef remember_session(self, UpstreamConnection conn)
    cpdef give_back(self, UpstreamConnection conn)
    cpdef forget(self, UpstreamConnection conn)
