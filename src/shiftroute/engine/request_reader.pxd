# Cython declarations for request_reader.py, read when setup.py compiles it (ignored by Python): the classes
# below become extension types whose attributes live in the object's C struct instead of a dictionary or
# slots, so compiled code reads them directly. Every attribute a class sets must be declared here (the
# compiled build raises AttributeError otherwise; the suite runs against the compiled build). `public`
# keeps every attribute visible to Python code as before.
cdef class RequestReader:
    cdef public object sink, limits, holder, parser, parsing, headers, _url, _error
    cdef public object _head_bytes, _head_size, _trailer_bytes, _marks, _quiet
    cdef public bint in_head, _after_close

    # Called by feed on every read between requests: a C call rather than a method lookup.
    cpdef _scan_heads(self, bytes data)

# Inline C (the compiled twin of head_scan.py, imported by request_reader.py under the same name).
cimport shiftroute.protocol.head_scan as head_scan
# cimported so that on_headers_complete calls it as a C function (http1.pxd declares it cpdef).
from shiftroute.protocol.http1 cimport parse_request_head
