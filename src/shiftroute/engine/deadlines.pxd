# cython: annotation_typing=False
# (the .py annotates slots as `int`, which Cython would read as a Python int, not the C type below; the
# .py carries the same directive, for Cython 3.3, which takes it from the .py.)
#
# Cython declarations for deadlines.py, read when setup.py compiles it (ignored by Python): Deadlines
# becomes an extension type, and move/add/remove (called by every client connection and HTTP session) are
# cpdef: C calls from typed callers (listeners.pxd and session_base.pxd type the context, context.pxd the
# Deadlines), ordinary methods to Python. _RATE is a C double, so a slot is computed in C arithmetic.
cimport cython

from shiftroute.engine cimport clock

cdef double _RATE
cdef Py_ssize_t _MASK  # RING stays a Python int: tests and readers import it


cdef class _Slot:
    cdef public Py_ssize_t number
    cdef public set owners


cdef class Deadlines:
    cdef public list _ring
    cdef public dict _far
    cdef public list _order
    cdef public set _queued
    cdef public object _timer
    cdef public Py_ssize_t _timer_slot, _ended
    cdef public bint _firing

    @cython.locals(entry=_Slot)
    cdef set _owners(self, Py_ssize_t slot)
    @cython.locals(entry=_Slot, place=Py_ssize_t)
    cdef set _take(self, Py_ssize_t slot)
    @cython.locals(new=Py_ssize_t)
    cpdef Py_ssize_t move(self, owner, Py_ssize_t slot, double when) except -1
    # `owners` typed: its add and discard are C calls (PySet_Add, PySet_Discard), not method lookups.
    @cython.locals(slot=Py_ssize_t, owners=set, place=Py_ssize_t)
    cpdef Py_ssize_t add(self, owner, double when) except -1
    @cython.locals(owners=set)
    cpdef remove(self, owner, Py_ssize_t slot)
    cpdef _schedule(self, Py_ssize_t slot)
