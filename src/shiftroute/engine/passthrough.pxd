# cython: annotation_typing=False
# (the .py's annotations name unions such as `BaseException | None`, which Cython would read as a type to
# check; the .pxd's types are the ones that count. The .py carries the same directive, for Cython 3.3.)
#
# Cython declarations for passthrough.py, read when setup.py compiles it (ignored by Python): both sides of
# a relay become extension types whose attributes live in the object's C struct, the client protocol is
# typed (listeners.pxd), and the methods one side calls on the other per relayed piece are cpdef: C calls
# from here, ordinary methods to Python. Every attribute a class sets must be declared here (the compiled
# build raises AttributeError otherwise; the suite runs against the compiled build). `public` keeps every
# attribute visible to Python code.
#
# listeners.py imports this module inside a function, not at its top: this module cimports the listener
# type, so importing it imports listeners first, and a top-level import back would find this module half
# made.
cimport cython

from shiftroute.engine cimport clock, decide
from shiftroute.engine.balance cimport ServerState
from shiftroute.engine.context cimport RouterContext
from shiftroute.engine.endpoint_link cimport EndpointLink, RelayPeer, RelayUpstream
from shiftroute.engine.link_hub cimport hub_for
from shiftroute.engine.listeners cimport HttpsClientProtocol
from shiftroute.engine.splice cimport SpliceRelay
from shiftroute.routing.table cimport Backend, Server


# Module constants as C values: compared per relayed piece.
cdef bint _SPLICE_AVAILABLE
cdef Py_ssize_t _SPLICE_AFTER_BYTES


cdef class Passthrough(RelayPeer):
    cdef public HttpsClientProtocol client
    cdef public RouterContext ctx
    cdef public object loop, _tried, _connecting, _connect_waiting, _connect_server, _server
    cdef public Backend backend  # typed (routing/table.pxd): its fields are struct reads
    cdef public list _buffer
    cdef public bytes _hello
    cdef public RelayUpstream relay
    cdef public EndpointLink _connect_link
    cdef public SpliceRelay _splice
    cdef public bint _connect_timed_out, _admitted
    cdef public double _started, _idle_limit, _idle_step, _quiet_since
    cdef public Py_ssize_t _bytes_up, _bytes_down, _seen

    cpdef start(self)
    @cython.locals(server=Server, link=EndpointLink)
    cpdef _connect(self)
    cpdef _cancel_connect(self, bint timed_out)
    cpdef client_data(self, bytes data)
    cpdef client_eof(self)
    cpdef client_writable(self)
    cpdef deadline_reached(self)
    cpdef client_lost(self, object exc)
    cpdef _idle_after(self, double seconds)
    cpdef _set_idle_limit(self, double seconds)
    cpdef Py_ssize_t _moved(self)
    cpdef relay_data(self, bytes data)
    cpdef relay_eof(self)
    cpdef relay_closed(self)
    cpdef relay_paused(self, bint paused)
    cpdef link_connected(self, RelayUpstream link)
    cpdef _connected(self, RelayUpstream relay, object exc)
    cpdef link_failed(self, object exc)
    cpdef _maybe_splice(self)
    @cython.locals(server=Server)
    cpdef _done(self)
