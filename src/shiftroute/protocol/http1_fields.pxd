# cython: annotation_typing=False
# (the .py annotates with Python types, such as `item: tuple[...]`, which Cython would read as exactly that
# Python type, in conflict with these declarations. The .py carries the same directive: Cython 3.1 takes
# it from this file, Cython 3.3 from the .py.)
#
# Cython declarations for http1_fields.py, read when setup.py compiles it (ignored by Python). The helpers
# are cpdef: C functions that http1 and engine/headers cimport and call in C, and still Python functions
# for Python callers and tests. A `bytes`, `list` or `tuple` argument accepts exactly that type or None:
# the callers pass what httptools produces (bytes names and values, lists of tuples). The caches are C
# globals (not visible to Python as module attributes).
cimport cython

ctypedef const unsigned char* _bytes_ptr

cdef dict _HOSTS
cdef set _VALID_HOSTS
cdef Py_ssize_t _CACHED_HOSTS, _CACHED_HOST_LENGTH
cdef frozenset _SINGLE_TOKENS

@cython.locals(found=str)
cpdef str normalize_host(bytes value)

cpdef bint valid_host(bytes value) except -1

@cython.locals(host=bytes, end=Py_ssize_t, colon=Py_ssize_t)
cdef str _normalize_host(bytes value)

@cython.locals(lower=bytes, token=bytes)
cpdef add_tokens(bytes value, list tokens)

# names_by_length stays a Python function (it runs at import, and a generator cannot be in a cpdef one).

# `data` and `first` are C pointers to the bytes of `name` and `candidate` (borrowed: the objects outlive
# the call), so that a byte is read as a C integer (indexing a bytes object makes a Python int); every
# index is within the length checked before.
@cython.locals(size=Py_ssize_t, candidate=bytes, data=_bytes_ptr, first=_bytes_ptr)
cpdef bytes special_name(bytes name, tuple by_length)

@cython.locals(sizes=set)
cpdef list drop_named(list headers, set named)

@cython.locals(size=Py_ssize_t, data=_bytes_ptr)
cpdef tuple kept(object item, bytes name, bytes value)

@cython.locals(size=Py_ssize_t, data=_bytes_ptr)
cpdef bytes trim(bytes value)
