# Cython declarations for listeners.py, read when setup.py compiles it (ignored by Python): the client
# protocols become extension types whose attributes live in the object's C struct, so their own methods
# and the session (session_base.pxd types `down` as _ClientBase) read them directly, and the Downstream
# methods the session calls per request are cpdef: C calls from typed callers, ordinary methods to Python.
# Every attribute a class sets must be declared here (the compiled build raises AttributeError otherwise;
# the suite runs against the compiled build). `public` keeps every attribute visible to Python code.
#
# An extension type cannot subclass asyncio.Protocol (a Python class): the listeners do not, in either
# build. uvloop and asyncio take any object with the protocol's methods (uvloop only asks whether it has
# `get_buffer`, for BufferedProtocol).
cimport cython

from shiftroute.engine cimport clock
from shiftroute.engine.client_link cimport ClientLink
from shiftroute.engine.context cimport RouterContext
from shiftroute.engine.endpoint_link cimport RelayPeer
from shiftroute.engine.link_hub cimport LinkProtocol, ProtocolMaker
from shiftroute.engine.outbox cimport Outbox
from shiftroute.engine.tls cimport TlsLayer
from shiftroute.routing.table cimport passthrough_for


cdef class _ClientBase(LinkProtocol):
    cdef public RouterContext ctx
    cdef public object transport, loop, session, peer_ip, local_port, sni
    cdef public Outbox outbox
    cdef public ClientLink link
    cdef public bint secure, writing_paused, _reading_paused, closed, lingering, peer_eof
    cdef public double deadline
    cdef public Py_ssize_t _deadline_slot
    cdef object __weakref__  # a closed connection's release is tested through a weak reference

    cpdef _setup(self, RouterContext ctx)
    # The protocol's methods (link_hub.pxd's LinkProtocol), overridden here and below.
    cpdef connection_made(self, object transport)
    cpdef connection_lost(self, object exc)
    cpdef pause_writing(self)
    cpdef resume_writing(self)
    cpdef bint _made(self, object transport) except -1
    cpdef int server_port(self) except -1
    cpdef _lost(self)
    cpdef pause_reading(self)
    cpdef resume_reading(self)
    cpdef finish(self)
    cpdef abort(self)
    cpdef flush(self)
    cpdef Outbox _outbox(self)
    cpdef send(self, bytes data)
    cpdef write_now(self, bytes data)
    cpdef write_eof_now(self)
    cpdef bint transport_closing(self) except -1
    cpdef close_transport(self)
    cpdef arm(self, double seconds)
    cpdef arm_from(self, double now, double seconds)
    cpdef disarm(self)
    cpdef deadline_passed(self)


cdef class HttpClientProtocol(_ClientBase):
    cpdef connection_made(self, object transport)
    cpdef data_received(self, bytes data)
    cpdef bint eof_received(self) except -1


cdef class HttpsClientProtocol(_ClientBase):
    cdef public object _default_context, _hello, _phase
    cdef public RelayPeer _passthrough  # a Passthrough (engine/passthrough.py): its methods are C calls
    cdef public TlsLayer _tls

    cpdef _setup_https(self, RouterContext ctx, object default_context)
    cpdef deadline_passed(self)
    cpdef connection_made(self, object transport)
    cpdef connection_lost(self, object exc)
    cpdef data_received(self, bytes data)
    cpdef bint eof_received(self) except -1
    cpdef resume_writing(self)
    cpdef _hello_in(self, bytes data)
    cpdef _decrypt(self, bytes data)
    cpdef send_raw(self, bytes data)
    cpdef send(self, bytes data)
    cpdef finish(self)


cdef class HttpsProtocols(ProtocolMaker):
    cdef public RouterContext ctx
    cdef public object default_context

    @cython.locals(protocol=HttpsClientProtocol)
    cpdef LinkProtocol make(self)
