"""The modules setup.py compiles with Cython when it can (the per-request path of the data plane).

Kept free of imports so that setup.py can read it before anything is installed."""

COMPILED_MODULES = [
    "shiftroute.protocol.http1_fields",
    "shiftroute.protocol.http1",
    "shiftroute.protocol.tls_hello",
    "shiftroute.engine.backend_side",
    "shiftroute.engine.client_link",
    "shiftroute.engine.balance",
    "shiftroute.engine.context",
    "shiftroute.engine.deadlines",
    "shiftroute.engine.endpoint_link",
    "shiftroute.engine.decide",
    "shiftroute.engine.exchange",
    "shiftroute.engine.headers",
    "shiftroute.engine.link_hub",
    "shiftroute.engine.outbox",
    "shiftroute.engine.http_session",
    "shiftroute.engine.listeners",
    "shiftroute.engine.passthrough",
    "shiftroute.engine.request_reader",
    "shiftroute.engine.session_base",
    "shiftroute.engine.splice",
    "shiftroute.engine.tls",
    "shiftroute.engine.transports",
    "shiftroute.engine.upstream",
    "shiftroute.routing.table",
]
