# cython: annotation_typing=False
# (http1.pxd types the functions below itself: an annotation such as `status: int` or `item: tuple[...]`
# would otherwise type an argument as a Python int or tuple, in conflict with these declarations. The .py
# carries the same directive: Cython 3.1 takes it from this file, Cython 3.3 from the .py.)
#
# Cython declarations for http1.py, read when setup.py compiles it (ignored by Python).
#
# The two head classes become extension types whose attributes live in the object's C struct (one of each
# per request; parse_request_head and parse_response_head make them with `__new__` and struct writes, other
# callers through the C __init__). Every attribute a class sets must be declared here (the compiled build
# raises AttributeError otherwise). `public` keeps every attribute visible to Python code as before.
#
# The functions every request runs are declared with C types so that Cython uses its list, bytes and tuple
# fast paths (appends, indexing, lengths and tuple unpacking without generic lookups) and calls them as C
# functions: `cdef` for the module's own helpers (not visible to Python), `cpdef` for what other modules
# or tests call (still callable from Python; a compiled module that cimports it, as headers.pxd does,
# makes a C call). A `bytes`, `list` or `tuple` argument or local accepts exactly that type or None: the
# callers pass what httptools produces (bytes names and values, lists of tuples). Private tables read on
# every request are C globals (not visible to Python as module attributes).
cimport cython

cimport shiftroute.protocol.head_bytes as head_bytes

# The field helpers, cimported: C calls per header (http1_fields.pxd declares them cpdef).
# (names_by_length, used at import, is imported by http1.py as a Python function.)
from shiftroute.protocol.http1_fields cimport (
    add_tokens,
    drop_named,
    kept,
    normalize_host,
    special_name,
    trim,
    valid_host,
)


cdef class RequestHead:
    cdef public object method, path, query, version, host, host_header, headers, websocket_key, upgrade
    cdef public object content_length
    cdef public int body
    cdef public bint keep_alive, expect_continue


cdef class ResponseHead:
    cdef public object status, reason, headers, upgrade, websocket_accept, content_length
    cdef public int body
    cdef public bint keep_alive


cdef dict _STATUS_LINES
cdef frozenset _REQUEST_UNNAMED, _RESPONSE_UNNAMED
cdef tuple _REQUEST_BY_LENGTH, _RESPONSE_BY_LENGTH

@cython.locals(after=bytes, slash=Py_ssize_t, authority=bytes, rest=bytes, question=Py_ssize_t)
cdef tuple _target(bytes method, bytes url)

@cython.locals(http11=bint, hosts=list, te_values=list, content_length=bytes, connection_tokens=list,
               expect=bytes, upgrade=bytes, ws_key=bytes, ws_version=bytes, headers=list, name=bytes,
               value=bytes, lower=bytes, body=int, host_header=bytes, path=bytes, query=bytes,
               authority=bytes, named=set, keep_alive=bint, websocket_key=bytes, head=RequestHead)
cpdef RequestHead parse_request_head(bytes method, bytes url, str version, list raw_headers)

@cython.locals(te_values=list, content_length=tuple, connection_tokens=list, upgrade=bytes, accept=bytes,
               headers=list, name=bytes, value=bytes, lower=bytes, named=set, head=ResponseHead)
cpdef ResponseHead parse_response_head(object status, bytes reason, list raw_headers, bytes request_method)

cpdef bytes serialize_head(bytes first_line, list headers, list added=*)

cpdef bytes serialize_pieces(list parts, list headers, list added=*)


@cython.locals(start=bytes)
cpdef bytes status_line_start(object status)
