"""What every command shares: the store and namespace options, and one place that turns errors into a line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from shiftroute.errors import ShiftrouteError, UsageError
from shiftroute.store import Store, open_store

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_NAMESPACE = "default"


@dataclass(slots=True)
class Context:
    """Global options (from the group or the command itself) and the store, opened on first use."""

    store_url: str | None = None
    namespace: str | None = None
    _store: Store | None = field(default=None, repr=False)

    @property
    def ns(self) -> str:
        return self.namespace or DEFAULT_NAMESPACE

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.store_url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


pass_context = click.make_pass_decorator(Context, ensure=True)


def store_options(func: Callable[P, R]) -> Callable[P, R]:
    """`--store` and `-n/--namespace` on a command too, so they work after the command name as with oc."""

    def set_store(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(Context).store_url = value

    def set_namespace(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(Context).namespace = value

    decorated = click.option(
        "-n",
        "--namespace",
        expose_value=False,
        callback=set_namespace,
        metavar="NS",
        help="Namespace of the object (default: default).",
    )(func)
    return click.option(
        "--store",
        expose_value=False,
        callback=set_store,
        metavar="URL",
        envvar="SHIFTROUTE_STORE",
        help="Store: a file path, sqlite:///path or etcd://host:port[,host:port] "
        "(default $XDG_STATE_HOME/shiftroute/store.db).",
    )(decorated)


def fail(message: str) -> None:
    raise UsageError(message)


def read_file_arg(option: str, path: str) -> str:
    """Contents of a file given to an option, or a one-line error naming the option."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{option} {path}: not a text (PEM) file") from None


def handle_errors(func: Callable[..., R]) -> Callable[..., R]:
    """User mistakes become `error: <one line>` and exit 1; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        try:
            return func(*args, **kwargs)
        except ShiftrouteError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


def echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded like kubectl's printer: three spaces between columns, no trailing spaces."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    out = []
    for row in [headers, *rows]:
        out.append("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return out


def kind_label(kind: str) -> str:
    """`oc`'s resource names in messages: route.route.openshift.io/NAME, service/NAME."""
    return {
        "Route": "route.route.openshift.io",
        "Service": "service",
        "EndpointSlice": "endpointslice.discovery.k8s.io",
        "Router": "router.shiftroute.io",
    }.get(kind, kind.lower())


def resource_kind(name: str, allowed: tuple[str, ...]) -> str:
    aliases = {
        "route": "Route",
        "routes": "Route",
        "service": "Service",
        "services": "Service",
        "svc": "Service",
        "endpointslice": "EndpointSlice",
        "endpointslices": "EndpointSlice",
        "router": "Router",
        "routers": "Router",
    }
    kind = aliases.get(name.lower())
    if kind is None or kind not in allowed:
        names = ", ".join(sorted({k.lower() + "s" for k in allowed}))
        raise UsageError(f'unknown resource type "{name}": use one of {names}')
    return kind
