"""shiftroute: an OpenShift-4-style ingress router in Python."""

__version__ = "0.1.0"
