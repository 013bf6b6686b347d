# The compiled twin of head_bytes.py: http1.pxd cimports this module under the same name as http1.py
# imports the Python one, so compiled, `head_bytes.serialize(...)` is this inline C function and, as
# Python sources, it is head_bytes.py's (the same pattern as `import numpy` / `cimport numpy`).
# Keep the two in step: tests/unit/test_head_bytes.py runs both against each other.
#
# Why C: a head was a list of 4 pieces per header joined by b"".join, about 80 instructions per piece
# (the list append, the join's buffer per item); here the size is summed, one bytes object is allocated
# and each piece is copied into it.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.string cimport memcpy


cdef inline Py_ssize_t _fields_size(list fields) except -1:
    cdef Py_ssize_t total = 0, n
    cdef tuple field
    cdef bytes name, value
    for field in fields:
        if len(field) != 2:
            raise ValueError("a header field is a (name, value) pair")
        name = field[0]  # a typed assignment checks the type, but lets None through:
        value = field[1]
        if name is None or value is None:
            raise TypeError("a header name or value is None, not bytes")
        n = PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value)
        if n > PY_SSIZE_T_MAX - 4 - total:
            raise OverflowError("header fields too large")
        total += 4 + n
    return total


cdef inline Py_ssize_t _put(char* out, Py_ssize_t pos, bytes piece):
    """Copy `piece` to `out` at `pos` (the caller has checked that it fits); the position after it."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(piece)
    memcpy(out + pos, PyBytes_AS_STRING(piece), n)
    return pos + n


cdef inline Py_ssize_t _copy_fields(char* out, Py_ssize_t pos, Py_ssize_t end, list fields) except -1:
    # After _fields_size accepted the same fields, with no Python code run in between; the bound is checked
    # anyway, so that a list changed between the two passes can never write past the object.
    cdef tuple field
    cdef bytes name, value
    for field in fields:
        name = field[0]
        value = field[1]
        if name is None or value is None or pos + 4 + len(name) + len(value) > end:
            raise RuntimeError("header fields changed while the head was written")
        out[pos] = 13  # \r
        out[pos + 1] = 10  # \n
        pos = _put(out, pos + 2, name)
        out[pos] = 58  # :
        out[pos + 1] = 32  # space
        pos = _put(out, pos + 2, value)
    return pos


cdef inline bytes serialize(list first, list headers, list added):
    cdef Py_ssize_t total = 4, pos = 0, n
    cdef bytes piece
    for piece in first:
        if piece is None:
            raise TypeError("a piece of the first line is None, not bytes")
        total += PyBytes_GET_SIZE(piece)  # the first line is a few short pieces: no overflow possible
    n = _fields_size(headers)
    if n > PY_SSIZE_T_MAX - total:
        raise OverflowError("head too large")
    total += n
    if added is not None:
        n = _fields_size(added)
        if n > PY_SSIZE_T_MAX - total:
            raise OverflowError("head too large")
        total += n
    result = PyBytes_FromStringAndSize(NULL, total)
    cdef char* out = PyBytes_AS_STRING(result)
    for piece in first:
        if piece is None or pos + PyBytes_GET_SIZE(piece) > total - 4:
            raise RuntimeError("the first line changed while the head was written")
        pos = _put(out, pos, piece)
    pos = _copy_fields(out, pos, total - 4, headers)
    if added is not None:
        pos = _copy_fields(out, pos, total - 4, added)
    if pos != total - 4:
        raise RuntimeError("header fields changed while the head was written")
    memcpy(out + pos, b"\r\n\r\n", 4)
    return result
