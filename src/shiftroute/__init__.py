"""shiftroute: an OpenShift-4-style ingress router in Python."""

from shiftroute import accel

__version__ = "0.1.0"

accel.install()  # before anything imports a module that may also exist compiled (see shiftroute.accel)
