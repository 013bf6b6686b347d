# cython: annotation_typing=False
# (the .py annotates descriptors and sizes as `int`, which Cython would read as Python ints, not the C types
# below; the .py carries the same directive, for Cython 3.3, which takes it from the .py.)
#
# Cython declarations for client_link.py, read when setup.py compiles it (ignored by Python): ClientLink and
# the listening socket are HubMembers (link_hub.pxd), so the hub's call per event is a C call, and
# `sock_syscalls` is cimported as well as imported, so its calls here are its C twins (sock_syscalls.pxd).
# Every attribute a class sets must be declared here. `public` keeps every attribute visible to Python.
cimport cython

from shiftroute.engine cimport sock_syscalls
from shiftroute.engine.link_hub cimport HubMember, LinkHub, LinkProtocol, ProtocolMaker, after_bytes


# The event masks as C values (module objects, each test of an event made Python ints).
cdef unsigned int _IN, _OUT, _ERR_HUP, _ET, _RDHUP
cdef int _AGAIN, _EMPTY  # link_hub's READ_AGAIN, READ_EMPTY
cdef Py_ssize_t READ_SIZE  # a C value: each read's length is compared with it


cdef class ClientLink(HubMember):
    cdef public LinkHub hub
    cdef public object peer, _lost_exc
    cdef public LinkProtocol protocol  # the HTTPS listener (listeners.pxd): its methods are C calls
    cdef public HubServer server
    cdef public list _pending
    cdef public Py_ssize_t _pending_size, _high, _low
    cdef public bint _reading, _read_eof, _closing, _close_after_write, _eof_after_write, _eof_written
    cdef public bint _protocol_paused, _shared, _lost_reported

    cpdef on_events(self, unsigned int events)
    @cython.locals(data=object, step=int)
    cpdef _read(self, unsigned int events)
    cpdef _callback_failed(self, str name, object exc)
    @cython.locals(sent=Py_ssize_t)
    cpdef write(self, bytes data)
    cpdef writelines(self, object pieces)
    @cython.locals(sent=Py_ssize_t, data=bytes)
    cpdef _flush(self)
    cpdef Py_ssize_t get_write_buffer_size(self) except -1
    cpdef bint can_write_eof(self)
    cpdef write_eof(self)
    cpdef _shutdown(self)
    cpdef pause_reading(self)
    cpdef resume_reading(self)
    cpdef bint is_reading(self)
    cpdef bint is_closing(self)
    cpdef close(self)
    cpdef abort(self)
    cpdef fail(self, object exc)
    cpdef report_lost(self)
    cpdef start(self)
    @cython.locals(events=cython.uint)
    cpdef _rewatch(self, bint rearm=*)
    @cython.locals(fd=int)
    cpdef _close_fd(self)


cdef class _Listening(HubMember):
    cdef public HubServer server
    cdef public object sock

    cpdef on_events(self, unsigned int events)
    cpdef abort(self)


cdef class HubServer:
    cdef public object loop, sockets, _listening, _locals, _resume
    cdef public ProtocolMaker make_protocol
    cdef public LinkHub hub
    cdef public int _backlog
    cdef public bint serving, closed

    @cython.locals(link=ClientLink, protocol=LinkProtocol)
    cpdef accepted(self, int fd, object peer)
