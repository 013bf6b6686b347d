# Cython declarations for http_session.py, read when setup.py compiles it (ignored by Python): the classes
# below become extension types whose attributes live in the object's C struct instead of a dictionary or
# slots, so compiled code reads them directly. Every attribute a class sets must be declared here (the
# compiled build raises AttributeError otherwise; the suite runs against the compiled build). `public`
# keeps every attribute visible to Python code as before.
from shiftroute.engine.exchange cimport Exchange


cdef class HttpSession:
    cdef public object ctx, down, loop, reader, queue, tunnel, _pending_error, _counted_routes
    cdef public object _client_info, _hold, _timer, _phase
    cdef public double _deadline
    cdef public bint closed, peer_closed, _hold_clean
