# Cython declarations for session_base.py, read when setup.py compiles it (ignored by Python): the class
# becomes an extension type whose attributes live in the object's C struct instead of a dictionary or
# slots, so compiled code reads them directly. Every attribute the class sets must be declared here (the
# compiled build raises AttributeError otherwise; the suite runs against the compiled build). `public`
# keeps every attribute visible to Python code as before. HttpSession (http_session.pxd) extends it.
cdef class SessionBase:
    cdef public object ctx, down, loop, queue, tunnel, _pending_error, _counted_routes, _timer, _phase
    cdef public double _deadline
    cdef public bint closed, peer_closed
