# Cython declarations for decide.py, read when setup.py compiles it (ignored by Python): RequestHead is
# cimported so that the module's `RequestHead` annotations type its arguments as the extension type of
# http1.pxd, whose attributes are then read from the C struct.
from shiftroute.protocol.http1 cimport RequestHead
from shiftroute.routing.table cimport Backend
