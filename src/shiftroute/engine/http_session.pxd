# Cython declarations for http_session.py, read when setup.py compiles it (ignored by Python): the class
# below becomes an extension type (extending BackendSide's, backend_side.pxd) whose own attributes live in
# the object's C struct instead of a dictionary or slots, so compiled code reads them directly. Every
# attribute the class sets must be declared here or in its bases' (the compiled build raises
# AttributeError otherwise; the suite runs against the compiled build). `public` keeps every attribute
# visible to Python code as before.
from shiftroute.engine.backend_side cimport BackendSide, ResponseCallbacks
from shiftroute.engine.exchange cimport Exchange
from shiftroute.engine.upstream cimport UpstreamConnection
from shiftroute.routing.table cimport Backend, Server


cdef class HttpSession(BackendSide):
    cdef public object reader, _client_info

    # The steps of a request, called on self: C calls rather than method lookups (Python sees them as before).
    cpdef _pump(self)
    cpdef _route(self, Exchange ex)
    cpdef _pick_server(self, Exchange ex)
    cpdef _open(self, Exchange ex, Server server, bint reuse)
    cpdef _attach(self, Exchange ex, UpstreamConnection conn)
