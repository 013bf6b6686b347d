# Cython declarations for table.py, read when setup.py compiles it (ignored by Python): the route's
# compiled form becomes extension types whose fields live in the object's C struct, so the data plane's
# compiled modules (which cimport them) read `backend.timeouts.server` and the like as struct reads, not
# generic attribute lookups through the class's slots. `readonly` keeps every field visible to Python code
# and keeps them frozen: Python may read them, never assign them (table.py sets the derived fields in C).
cimport cython


cdef class Server:
    cdef readonly object id, cookie_value, address, port, service, weight, label


cdef class RateLimits:
    cdef readonly object concurrent_tcp, rate_tcp, rate_http


cdef class Timeouts:
    cdef readonly object connect, server, client, tunnel


cdef class Backend:
    cdef readonly object namespace, name, host, wildcard, path, termination, insecure_policy, servers
    cdef readonly object balance, cookie_name, cookie_suffix, servers_by_cookie, backend_context
    cdef readonly object verify_service_hostname, serving_context, hsts, forwarded_policy, rewrite_target
    cdef readonly object request_actions, response_actions, allowlist, max_conn_per_server
    cdef readonly object health_interval, generation, age_order, certificate_expiry
    cdef readonly object label, set_cookie, cookie_prefix
    cdef readonly Timeouts timeouts
    cdef readonly RateLimits rate_limits


# The HTTPS listener's lookup per connection (listeners.pxd cimports this module). The indexes are dicts
# (RoutingTable.build and with_changes make them so).
@cython.locals(exact=dict, wildcard=dict)
cpdef Backend passthrough_for(object table, str sni)
