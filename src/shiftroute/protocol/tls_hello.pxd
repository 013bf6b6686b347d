# Cython declarations for tls_hello.py, read when setup.py compiles it (ignored by Python): the reader
# becomes an extension type whose cursor lives in the object's C struct. Every attribute the class sets
# must be declared here (the compiled build raises AttributeError otherwise; the suite, fuzz tests
# included, runs against the compiled build).
cdef class _Reader:
    cdef public object _data, _pos, _end
