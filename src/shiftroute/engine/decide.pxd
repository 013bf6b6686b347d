# Cython declarations for decide.py, read when setup.py compiles it (ignored by Python): RequestHead is
# cimported so that the module's `RequestHead` annotations type its arguments as the extension type of
# http1.pxd, whose attributes are then read from the C struct.
from shiftroute.engine.context cimport RouterContext
from shiftroute.protocol.http1 cimport RequestHead
from shiftroute.routing.table cimport Backend


# Called once per passthrough connection (passthrough.pxd cimports this module): C calls from there.
cpdef bint admit_connection(RouterContext ctx, Backend backend, str ip) except -1
cpdef release_connection(RouterContext ctx, str label, str ip)
