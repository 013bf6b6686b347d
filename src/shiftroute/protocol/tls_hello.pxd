# cython: annotation_typing=False
# (the .py annotates positions as `int`, which Cython would read as a Python int, not the C types below.
# The .py carries the same directive: Cython 3.1 takes it from this file, Cython 3.3, which pip's
# isolated build uses, from the .py.)
#
# Cython declarations for tls_hello.py, read when setup.py compiles it (ignored by Python). The parser's
# helpers become C functions: `data` is a pointer into the caller's bytes or bytearray (borrowed for the
# call; the .py indexes the object itself) and positions are C integers, so every index the .py reads
# must be checked against `n` or the enclosing vector's end first, as it is: there is no bounds check.
cimport cython

ctypedef const unsigned char* _bytes_ptr

# The protocol's constants as C ints (set from the .py's assignments when the module loads): compared with
# a C int as module objects, each comparison made a Python int first (about 30 per ClientHello).
cdef int _CONTENT_HANDSHAKE, _HANDSHAKE_CLIENT_HELLO, _RECORD_HEADER, _HANDSHAKE_HEADER, _MAX_FRAGMENT
cdef int _EXT_SERVER_NAME, _EXT_ALPN, _EXT_SUPPORTED_VERSIONS, _NAME_TYPE_HOST_NAME
cdef int _MAX_HOSTNAME, _MAX_LABEL, _MAX_HELLO

@cython.locals(first=int, announced=Py_ssize_t, need=Py_ssize_t, head=Py_ssize_t, length=Py_ssize_t,
               pos=Py_ssize_t, rlen=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, i=Py_ssize_t,
               stop=Py_ssize_t, pieces=list, message=bytes)
cdef object _parse(_bytes_ptr data, Py_ssize_t n)

@cython.locals(size=Py_ssize_t)
cdef Py_ssize_t _vector(_bytes_ptr data, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t len_size,
                        Py_ssize_t low, Py_ssize_t high, str what) except -1

@cython.locals(legacy_version=int, start=Py_ssize_t, extensions_end=Py_ssize_t,
               seen_low=cython.ulonglong, bit=cython.ulonglong, seen=set, ext_type=int)
cdef object _parse_body(_bytes_ptr data, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t record_length)

@cython.locals(names_end=Py_ssize_t, name=Py_ssize_t, name_type=int)
cdef object _parse_server_name(_bytes_ptr data, Py_ssize_t pos, Py_ssize_t end)

@cython.locals(label=Py_ssize_t, i=Py_ssize_t, c=int, upper=bint, name=str)
cdef str _valid_hostname(_bytes_ptr data, Py_ssize_t start, Py_ssize_t end)

@cython.locals(names_end=Py_ssize_t, start=Py_ssize_t, protocols=list)
cdef tuple _parse_alpn(_bytes_ptr data, Py_ssize_t pos, Py_ssize_t end)

@cython.locals(versions_end=Py_ssize_t, i=Py_ssize_t)
cdef tuple _parse_supported_versions(_bytes_ptr data, Py_ssize_t pos, Py_ssize_t end)
