"""Stores: where routes, services and endpoint slices live. `open_store(url)` picks one from a URL."""

from __future__ import annotations

import os
from pathlib import Path

from shiftroute.errors import UsageError
from shiftroute.store.base import ApplyResult, ListResult, Store, Watch, WatchEvent

__all__ = ["ApplyResult", "ListResult", "Store", "Watch", "WatchEvent", "default_store_path", "open_store"]

STORE_ENV = "SHIFTROUTE_STORE"


def state_home() -> Path:
    """`$XDG_STATE_HOME/shiftroute`, falling back to `~/.local/state/shiftroute` (XDG Base Directory spec)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "shiftroute"


def default_store_path() -> Path:
    return state_home() / "store.db"


def resolve_store_url(url: str | None) -> str:
    return url or os.environ.get(STORE_ENV) or str(default_store_path())


def open_store(
    url: str | None = None,
    *,
    etcd_cacert: str | None = None,
    etcd_cert: str | None = None,
    etcd_key: str | None = None,
) -> Store:
    """`sqlite:///abs/path`, `sqlite://rel/path`, or a plain file path; default: the XDG state file.
    `etcd://host:port[,host:port...][/prefix/]` or `etcds://...` (TLS files from SHIFTROUTE_ETCD_CACERT,
    SHIFTROUTE_ETCD_CERT, SHIFTROUTE_ETCD_KEY unless given here) opens the etcd store; it connects on
    first use, so a router can start while etcd is down."""
    target = resolve_store_url(url)
    if "://" in target:
        scheme, _, rest = target.partition("://")
        if scheme in ("etcd", "etcds"):
            from shiftroute.store.etcd import EtcdStore

            return EtcdStore(target, etcd_cacert=etcd_cacert, etcd_cert=etcd_cert, etcd_key=etcd_key)
        if scheme != "sqlite":
            raise UsageError(
                f"--store {target}: unknown store scheme {scheme!r} "
                "(use a file path, sqlite:///path, etcd://host:port or etcds://host:port)"
            )
        target = rest
    if not target:
        raise UsageError("--store: empty path")
    from shiftroute.store.sqlite import SqliteStore

    return SqliteStore(Path(target).expanduser())
