# Cython declarations for headers.py, read when setup.py compiles it (ignored by Python): the head classes
# are cimported so that the module's `RequestHead`/`ResponseHead` annotations type its arguments as the
# extension types of http1.pxd, and their attributes are read from the C struct.
from shiftroute.protocol.http1 cimport RequestHead, ResponseHead
