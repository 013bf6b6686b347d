# Cython declarations for balance.py, read when setup.py compiles it (ignored by Python): the classes
# below become extension types whose attributes live in the object's C struct, so compiled code that
# cimports them (context.pxd, the sessions) reads an endpoint's state (`state.active`) directly. Every
# attribute a class sets must be declared here (the compiled build raises AttributeError otherwise; the
# suite runs against the compiled build). `public` keeps every attribute visible to Python code as before.
cimport cython

from shiftroute.routing.table cimport Backend, Server


cdef class ServerState:
    cdef public Py_ssize_t active, consecutive_failures
    cdef public double down_until
    cdef public bint checked_down

    cpdef bint usable(self, double now)


cdef class Registry:
    cdef public dict servers, _rr  # typed: `.get` is a C dict lookup

    # Called per request (choosing a server, the sessions' active counts): C calls from typed callers.
    cpdef ServerState state(self, Server server)
    cpdef connect_failed(self, Server server)
    cpdef connect_succeeded(self, Server server)
    @cython.locals(s=Server)
    cpdef list candidates(self, Backend backend, exclude=*)
    cpdef choose(self, Backend backend, str client_ip, exclude=*)
