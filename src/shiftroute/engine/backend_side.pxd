# Cython declarations for backend_side.py, read when setup.py compiles it (ignored by Python): BackendSide
# becomes an extension type (extending SessionBase's, session_base.pxd; HttpSession extends it in turn,
# http_session.pxd) whose own attributes live in the object's C struct. Every attribute the class sets
# must be declared here (the compiled build raises AttributeError otherwise; the suite runs against the
# compiled build). `public` keeps every attribute visible to Python code as before.
# Inline C (the compiled twin of head_scan.py, imported by backend_side.py under the same name).
cimport shiftroute.protocol.head_scan as head_scan
from shiftroute.engine.exchange cimport Exchange
from shiftroute.engine.session_base cimport SessionBase
from shiftroute.engine.upstream cimport UpstreamConnection
from shiftroute.routing.table cimport Backend, Server


cdef class BackendSide(SessionBase):
    cdef public object _hold
    cdef public UpstreamConnection _returning
    cdef public bint _hold_clean

    # Called per response on self: C calls rather than method lookups (Python sees them as before).
    # _open is HttpSession's, declared again in http_session.pxd.
    cpdef _open(self, Exchange ex, Server server, bint reuse)
    cpdef bint _scan_response(self, Exchange ex, bytes data) except? False
    cpdef _response_head(self, Exchange ex)
    cpdef _response_body(self, Exchange ex, bytes data)
    cpdef _to_client(self, bytes data)
    cpdef _flush(self)
    cpdef _response_complete(self, Exchange ex, bint upstream_gone=*)


cdef class ResponseCallbacks:
    # session typed: its steps (_response_head, _response_body, _response_complete) are C calls.
    cdef public BackendSide session
    cdef public object conn
    cdef public Exchange ex
