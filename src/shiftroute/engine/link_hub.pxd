# cython: annotation_typing=False
# (the .py annotates descriptors and event masks as `int`, which Cython would read as Python ints, not the
# C types below; the .py carries the same directive, for Cython 3.3, which takes it from the .py.)
#
# Cython declarations for link_hub.py, read when setup.py compiles it (ignored by Python): HubMember is the
# base type of every socket in the set (endpoint_link.pxd, client_link.pxd), so the hub's call per event is
# a C call; `sock_syscalls` is cimported as well as imported, so its calls here are its C twins.
cimport cython

from shiftroute.engine cimport sock_syscalls


cdef class HubMember:
    cdef public int fd
    cdef public unsigned int _watched

    cpdef on_events(self, unsigned int events)
    cpdef abort(self)
    cpdef fail(self, object exc)
    cpdef report_lost(self)


cdef class LinkProtocol:
    cpdef connection_made(self, object transport)
    cpdef data_received(self, bytes data)
    cpdef bint eof_received(self) except -1
    cpdef connection_lost(self, object exc)
    cpdef pause_writing(self)
    cpdef resume_writing(self)


cdef class ProtocolMaker:
    cdef public object factory

    cpdef LinkProtocol make(self)


cdef class LinkHub


cpdef LinkHub hub_for(object loop)
cpdef int after_bytes(Py_ssize_t got, Py_ssize_t asked, unsigned int events) except -1


cdef class LinkHub:
    cdef public object loop
    cdef public int epfd
    cdef public dict links
    cdef public set _stale
    cdef public bint _dispatching, _lost_scheduled
    cdef public list _lost

    @cython.locals(fd=int)
    cpdef watch(self, HubMember member, unsigned int events)
    cpdef forget(self, int fd, bint remove)
    cpdef defer_lost(self, HubMember member)
    cpdef _member_failed(self, HubMember member, object exc)
    @cython.locals(member=HubMember)
    cpdef _report_lost(self)
    @cython.locals(count=int, i=int, fd=int, link=HubMember)
    cpdef _ready(self)
