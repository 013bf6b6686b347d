# (context.py carries `annotation_typing=False`: its annotations name `int` and `str`, which Cython would
# read as types that conflict with the declarations below.)
#
# Cython declarations for context.py, read when setup.py compiles it (ignored by Python): RouterContext
# becomes an extension type whose attributes live in the object's C struct, and its registry and pool are
# typed, so the sessions (which cimport it: session_base.pxd) reach `ctx.pool`, `ctx.registry` and their
# attributes directly. Every attribute the class sets must be declared here (the compiled build raises
# AttributeError otherwise; the suite runs against the compiled build). `public` keeps every attribute
# visible to Python code as before.
from shiftroute.engine.balance cimport Registry
from shiftroute.engine.deadlines cimport Deadlines
from shiftroute.engine.outbox cimport WriteBatch
from shiftroute.engine.upstream cimport Pool
from shiftroute.routing.table cimport Backend


cdef class RouterContext:
    cdef public object holder, limits, counters, rates, access, loop
    cdef public set connections  # typed: each connection's add and discard are C calls
    cdef public Registry registry
    cdef public Deadlines deadlines
    cdef public Pool pool
    cdef public WriteBatch writes
    cdef public bint access_log_enabled, draining

    # Called once per passthrough connection (engine/passthrough.py): a C call from there.
    cpdef log_tunnel(self, Backend backend, object endpoint, object sni, Py_ssize_t up, Py_ssize_t down,
                     double started, object client)
