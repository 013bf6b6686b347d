# Cython declarations for exchange.py, read when setup.py compiles it (ignored by Python): the classes
# below become extension types whose attributes live in the object's C struct instead of a dictionary or
# slots, so compiled code reads them directly. Every attribute a class sets must be declared here (the
# compiled build raises AttributeError otherwise; the suite runs against the compiled build). `public`
# keeps every attribute visible to Python code as before.
from shiftroute.engine.upstream cimport UpstreamConnection
from shiftroute.protocol.http1 cimport RequestHead, ResponseHead
from shiftroute.routing.table cimport Backend, Server


cdef class Exchange:
    # The heads typed: `ex.head.method` and the like are then struct reads in the compiled modules that
    # cimport Exchange (resp_head is None until the response head arrives; every read checks that first).
    cdef public RequestHead head
    cdef public ResponseHead resp_head
    cdef public object body_buffer, body_buffered, client_leftover, framing
    cdef public object resp_headers, resp_parser, resp_reason, sent, set_cookie, status, table
    # The route and endpoint typed (None until routed and picked): `ex.backend.timeouts.server` and the
    # like are struct reads (routing/table.pxd).
    cdef public Backend backend
    cdef public Server server
    cdef public object tried
    # Typed too (None when the exchange has no backend connection): `ex.upstream.closed` and the like.
    cdef public UpstreamConnection upstream
    cdef public double started
    cdef public int resp_status
    cdef public bint body_done, close_after, connecting, counted, done, request_sent, resp_started
    cdef public bint reused, upstream_extra, resp_fed
