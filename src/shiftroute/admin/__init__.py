"""The admin port: /healthz, /healthz/ready and /metrics (routes.md §7)."""
