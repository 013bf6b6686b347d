"""The builtin data plane: listeners, TLS, the HTTP proxy, the passthrough relay, upstream pools and
balancing. The only package that does socket I/O."""
