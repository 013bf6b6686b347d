# Cython declarations for session_base.py, read when setup.py compiles it (ignored by Python): the class
# becomes an extension type whose attributes live in the object's C struct instead of a dictionary or
# slots, so compiled code reads them directly. Every attribute the class sets must be declared here (the
# compiled build raises AttributeError otherwise; the suite runs against the compiled build). `public`
# keeps every attribute visible to Python code as before. HttpSession (http_session.pxd) extends it.
from shiftroute.engine.context cimport RouterContext
from shiftroute.engine.exchange cimport Exchange
from shiftroute.engine.listeners cimport _ClientBase


cdef class SessionBase:
    # ctx typed: `self.ctx.pool`, `self.ctx.registry` and their attributes are struct reads (context.pxd).
    cdef public RouterContext ctx
    # The client connection (listeners.pxd): `self.down.send(...)`, `self.down.peer_ip` are C calls and reads.
    cdef public _ClientBase down
    cdef public object loop, _clock, queue, tunnel, _pending_error, _counted_routes, _phase
    cdef public double _deadline
    cdef public Py_ssize_t _deadline_slot
    cdef public bint closed, peer_closed

    # Called per request on self: C calls (_pump is HttpSession's, declared again in http_session.pxd).
    cpdef _pump(self)
    cpdef _arm(self, double seconds, str phase)
    cpdef _touch(self, double seconds)
    cpdef _next(self)
    cpdef _release_server(self, Exchange ex)
    cpdef finish(self)
