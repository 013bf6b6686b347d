# Cython declarations for http_session.py, read when setup.py compiles it (ignored by Python): the class
# below becomes an extension type (extending SessionBase's, session_base.pxd) whose own attributes live in
# the object's C struct instead of a dictionary or slots, so compiled code reads them directly. Every
# attribute the class sets must be declared here or in session_base.pxd (the compiled build raises
# AttributeError otherwise; the suite runs against the compiled build). `public` keeps every attribute
# visible to Python code as before.
from shiftroute.engine.exchange cimport Exchange
from shiftroute.engine.session_base cimport SessionBase
from shiftroute.engine.upstream cimport UpstreamConnection


cdef class HttpSession(SessionBase):
    cdef public object reader, _client_info, _hold
    cdef public bint _hold_clean
