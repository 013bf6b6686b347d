# Cython declarations for headers.py, read when setup.py compiles it (ignored by Python): the head classes
# are cimported so that the module's `RequestHead`/`ResponseHead` annotations type its arguments as the
# extension types of http1.pxd, and their attributes are read from the C struct. The http1 functions
# called per request are cimported too, so that the calls are C calls (http1.pxd declares them cpdef).
cimport cython

from shiftroute.protocol.http1 cimport (
    RequestHead,
    ResponseHead,
    serialize_head,
    serialize_pieces,
    status_line_start,
)
from shiftroute.protocol.http1_fields cimport special_name
from shiftroute.routing.table cimport Backend, Server

cdef tuple _UPSTREAM_BY_LENGTH

# The per-connection forwarding values: an extension type, so that upstream_head reads them and calls
# own_headers without generic attribute lookups.
cdef class ClientInfo:
    cdef public bytes ip, port, proto, forwarded_for, _forwarded, _forwarded_host, _own_host
    cdef public tuple _own

    cpdef bytes forwarded(self, bytes host)

    cpdef tuple own_headers(self, bytes host)


cpdef bytes rewrite_path(Backend backend, bytes path)


@cython.locals(headers=list, sent=set, lower=bytes, name=bytes, pieces=list, own=tuple)
cpdef bytes upstream_head(RequestHead head, Backend backend, Server server, ClientInfo client)

