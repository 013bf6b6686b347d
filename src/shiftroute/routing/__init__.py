"""Compiling admitted routes into an immutable RoutingTable, and matching SNI and Host+path against it."""
