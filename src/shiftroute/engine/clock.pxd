# The C twins of clock.py's functions (see its docstring), for the compiled modules that cimport this
# module (listeners.pxd, passthrough.pxd, deadlines.pxd). Keep the two in step: CLOCK_MONOTONIC, in seconds.
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef inline double monotonic() noexcept:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return <double>now.tv_sec + <double>now.tv_nsec * 1e-9


cdef inline Py_ssize_t ticks(double seconds, double per_second) noexcept:
    return <Py_ssize_t>(seconds * per_second)  # truncated, as int(): the same for seconds >= 0
