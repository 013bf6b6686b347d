# Cython declarations for transports.py, read when setup.py compiles it (ignored by Python):
# TransportRegistry becomes an extension type, so uvloop's `self._transports[fd] = transport` reaches its
# __setitem__ as a C slot, not as a Python method call.


cdef class TransportRegistry:
    cdef dict _refs
