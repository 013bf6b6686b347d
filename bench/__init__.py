"""Side-by-side benchmark of shiftroute against HAProxy configured the OpenShift way (issue 5).

`python -m bench` (or `make bench`) runs it; `python -m bench.profile` profiles shiftroute under py-spy;
`python -m bench.store_latency` measures store change delivery between processes."""
