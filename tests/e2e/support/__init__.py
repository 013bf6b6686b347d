"""End-to-end test support: the router as a real process, recording backends, raw HTTP/TLS clients."""
