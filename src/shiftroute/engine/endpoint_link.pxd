# cython: annotation_typing=False
# (the .py annotates descriptors and event masks as `int`, which Cython would read as Python ints, not the
# C types below; the .py carries the same directive, for Cython 3.3, which takes it from the .py.)
#
# Cython declarations for endpoint_link.py, read when setup.py compiles it (ignored by Python): the
# classes become extension types whose attributes live in the object's C struct, the methods a relay
# calls per piece are cpdef (C calls from passthrough.pxd, ordinary methods to Python), and
# `sock_syscalls` is cimported as well as imported, so its calls here are its C twins (sock_syscalls.pxd).
# Every attribute a class sets must be declared here. `public` keeps every attribute visible to Python.
cimport cython

from shiftroute.engine cimport sock_syscalls
from shiftroute.engine.link_hub cimport HubMember, LinkHub, after_bytes


# The event masks as C values (module objects, each test of an event made Python ints).
cdef unsigned int _IN, _OUT, _ERR_HUP, _ET, _RDHUP
cdef int _AGAIN, _EMPTY  # link_hub's READ_AGAIN, READ_EMPTY
cdef Py_ssize_t READ_SIZE  # a C value: each read's length is compared with it


cdef class RelayPeer:
    cpdef start(self)
    cpdef client_data(self, bytes data)
    cpdef client_eof(self)
    cpdef client_writable(self)
    cpdef client_lost(self, object exc)
    cpdef deadline_reached(self)
    cpdef relay_data(self, bytes data)
    cpdef relay_eof(self)
    cpdef relay_closed(self)
    cpdef relay_paused(self, bint paused)
    cpdef link_connected(self, RelayUpstream link)
    cpdef link_failed(self, object exc)


cdef class RelayUpstream(HubMember):
    cdef public RelayPeer peer
    cdef public object transport
    cdef public bint paused, closed, eof

    cpdef write(self, bytes data)
    cpdef write_eof(self)
    cpdef close(self)
    cpdef abort(self)
    cpdef pause_reading(self)
    cpdef resume_reading(self)
    cpdef Py_ssize_t buffered(self) except -1
    cpdef int fileno(self) except -2


cdef class EndpointLink(RelayUpstream):
    cdef public LinkHub hub
    cdef public bint connecting, _reading, _eof_after_write, _close_after_write, _shared
    cdef public list _pending
    cdef public Py_ssize_t _pending_size

    @cython.locals(fd=int, done=int, sent=Py_ssize_t)
    cpdef bint connect(self, str address, int port, bytes first=*) except -1
    @cython.locals(code=int)
    cpdef on_events(self, unsigned int events)
    @cython.locals(data=object, step=int)
    cpdef _read(self, unsigned int events)
    cpdef _lost(self)
    @cython.locals(sent=Py_ssize_t, data=bytes)
    cpdef bint _send_first(self) except -1
    cpdef fail(self, object exc)
    @cython.locals(sent=Py_ssize_t)
    cpdef write(self, bytes data)
    @cython.locals(sent=Py_ssize_t, data=bytes)
    cpdef _flush(self)
    cpdef write_eof(self)
    cpdef _shutdown(self)
    cpdef close(self)
    cpdef abort(self)
    cpdef pause_reading(self)
    cpdef resume_reading(self)
    cpdef Py_ssize_t buffered(self) except -1
    cpdef int fileno(self) except -2
    @cython.locals(events=cython.uint)
    cpdef _rewatch(self, bint rearm=*)
    @cython.locals(fd=int)
    cpdef _close_fd(self)
