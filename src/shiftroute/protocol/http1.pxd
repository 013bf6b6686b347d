# Cython declarations for http1.py, read when setup.py compiles it (ignored by Python): the two head
# classes become extension types whose attributes live in the object's C struct, made by a C __init__
# (one of each per request). Every attribute a class sets must be declared here (the compiled build
# raises AttributeError otherwise). `public` keeps every attribute visible to Python code as before.
cdef class RequestHead:
    cdef public object method, path, query, version, host, host_header, headers, websocket_key, upgrade
    cdef public object content_length
    cdef public int body
    cdef public bint keep_alive, expect_continue


cdef class ResponseHead:
    cdef public object status, reason, headers, upgrade, websocket_accept, content_length
    cdef public int body
    cdef public bint keep_alive
