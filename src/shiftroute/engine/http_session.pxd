# Cython declarations for http_session.py, read when setup.py compiles it (ignored by Python): the class
# below becomes an extension type (extending SessionBase's, session_base.pxd) whose own attributes live in
# the object's C struct instead of a dictionary or slots, so compiled code reads them directly. Every
# attribute the class sets must be declared here or in session_base.pxd (the compiled build raises
# AttributeError otherwise; the suite runs against the compiled build). `public` keeps every attribute
# visible to Python code as before.
from shiftroute.engine.exchange cimport Exchange, ResponseCallbacks
from shiftroute.engine.session_base cimport SessionBase
from shiftroute.engine.upstream cimport UpstreamConnection


cdef class HttpSession(SessionBase):
    cdef public object reader, _client_info, _hold
    cdef public UpstreamConnection _returning
    cdef public bint _hold_clean

    # The steps of a request, called on self: C calls rather than method lookups (Python sees them as before).
    cpdef _pump(self)
    cpdef _route(self, Exchange ex)
    cpdef _pick_server(self, Exchange ex)
    cpdef _open(self, Exchange ex, server, bint reuse)
    cpdef _attach(self, Exchange ex, UpstreamConnection conn)
    cpdef _response_head(self, Exchange ex)
    cpdef _response_body(self, Exchange ex, bytes data)
    cpdef _to_client(self, bytes data)
    cpdef _flush(self)
    cpdef _response_complete(self, Exchange ex, bint upstream_gone=*)
