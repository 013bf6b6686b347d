"""Commands that write objects: create, expose, apply, delete, annotate."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from shiftroute.api.build import (
    endpoint_slice_manifests,
    parse_endpoint,
    route_manifest,
    service_manifest,
)
from shiftroute.api.manifest import Document, load_text
from shiftroute.api.objects import KIND_ENDPOINTSLICE, KIND_ROUTE, KIND_SERVICE, SERVICE_NAME_LABEL, Service
from shiftroute.api.validation import INSECURE_POLICIES, validate
from shiftroute.cli.common import (
    Context,
    handle_errors,
    kind_label,
    pass_context,
    read_file_arg,
    resource_kind,
    store_options,
)
from shiftroute.errors import (
    ConflictError,
    ManifestError,
    NotFoundError,
    PKIError,
    UsageError,
    ValidationError,
)
from shiftroute.pki.pem import load_certificates, load_private_key

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _create_checked(ctx: Context, manifest: dict[str, Any], where: str) -> dict[str, Any]:
    errors = validate(manifest)
    if errors:
        raise ValidationError(where, errors)
    return ctx.store.create(manifest)


# -- create -------------------------------------------------------------------------------------------


@click.group("create")
def create() -> None:
    """Create a service or a route."""


@create.command("service")
@click.argument("name")
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="Service port; named <port>-tcp.")
@click.option(
    "--endpoint",
    "endpoints",
    multiple=True,
    metavar="IP:PORT",
    help="A backend address; repeat for more. Written as an EndpointSlice for the service.",
)
@click.option("--target-port", type=click.IntRange(1, 65535), help="Service targetPort (default: --port).")
@store_options
@pass_context
@handle_errors
def create_service(
    ctx: Context, name: str, port: int, endpoints: tuple[str, ...], target_port: int | None
) -> None:
    """Create service NAME with one port and, with --endpoint, its endpoints.

    \b
    shiftroute create service httpd --port 443 --endpoint 127.0.0.1:9443
    makes service port 443 named 443-tcp (as `oc new-app` names it) and an EndpointSlice whose port
    443-tcp points at 127.0.0.1:9443.
    """
    parsed = [parse_endpoint(e) for e in endpoints]
    manifests = [service_manifest(name, ctx.ns, port, target_port)]
    manifests += endpoint_slice_manifests(name, ctx.ns, port, parsed)
    errors = [e for m in manifests for e in validate(m)]
    if errors:
        raise ValidationError(f"service {name}", errors)
    try:
        ctx.store.get(KIND_SERVICE, ctx.ns, name)
    except NotFoundError:
        pass
    else:
        raise UsageError(f'service "{name}" already exists in namespace "{ctx.ns}"')
    results = ctx.store.apply(manifests)
    for result in results:
        click.echo(f"{kind_label(result.manifest['kind'])}/{result.manifest['metadata']['name']} created")


def _pem_option(option: str, path: str | None, kind: str) -> str:
    """Read a certificate or key file for an option; refuse what is not PEM before it reaches the store."""
    if not path:
        return ""
    text = read_file_arg(option, path)
    try:
        if kind == "key":
            load_private_key(text, option)
        else:
            load_certificates(text, option)
    except PKIError as exc:
        raise UsageError(str(exc)) from None
    return text


def _first_port_name(ctx: Context, service: str) -> str:
    """`oc create route` without --port targets the service's first port, by name."""
    try:
        svc = Service.from_manifest(ctx.store.get(KIND_SERVICE, ctx.ns, service))
    except NotFoundError:
        raise UsageError(
            f'service "{service}" not found in namespace "{ctx.ns}": create it first '
            f"(shiftroute create service {service} --port PORT --endpoint IP:PORT) or give --port"
        ) from None
    if not svc.ports:
        raise UsageError(f'service "{service}" has no ports: give --port')
    first = svc.ports[0]
    return first.name or str(first.port)


def _route_options(func: Any) -> Any:
    options = [
        click.option("--service", required=True, help="The service the route sends traffic to."),
        click.option(
            "--hostname", default="", help="Host name (default: <name>-<namespace>.<router domain>)."
        ),
        click.option("--path", default="", help="Path prefix the route serves (not with passthrough)."),
        click.option(
            "--port", "target_port", help="Target port: a service port name or number (default: first)."
        ),
        click.option(
            "--wildcard-policy",
            type=click.Choice(["None", "Subdomain"]),
            default="None",
            help="Subdomain: serve every host under the parent domain of --hostname.",
        ),
        click.option(
            "--insecure-policy",
            type=click.Choice(list(INSECURE_POLICIES)),
            default=None,
            help="Plain-HTTP requests: None (refuse), Allow (serve) or Redirect (302 to https).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _create_route(ctx: Context, name: str, termination: str, service: str, **kw: Any) -> None:
    target_port = kw.pop("target_port") or _first_port_name(ctx, service)
    manifest = route_manifest(name, ctx.ns, service, termination=termination, target_port=target_port, **kw)
    stored = _create_checked(ctx, manifest, f"route {name}")
    click.echo(f"{kind_label(KIND_ROUTE)}/{stored['metadata']['name']} created")


@create.group("route")
def create_route() -> None:
    """Create a route with TLS termination: edge, passthrough or reencrypt.

    A plain-HTTP route is made with `shiftroute expose service`.
    """


@create_route.command("edge")
@click.argument("name")
@_route_options
@click.option("--cert", metavar="FILE", help="Certificate (PEM) served for the host; default: router's.")
@click.option("--key", metavar="FILE", help="Key (PEM) of --cert.")
@click.option("--ca-cert", metavar="FILE", help="CA chain (PEM) served with --cert.")
@store_options
@pass_context
@handle_errors
def create_edge(
    ctx: Context, name: str, service: str, cert: str | None, key: str | None, ca_cert: str | None, **kw: Any
) -> None:
    """Create an edge route: TLS ends at the router, plain HTTP to the service."""
    _create_route(
        ctx,
        name,
        "edge",
        service,
        certificate=_pem_option("--cert", cert, "cert"),
        key=_pem_option("--key", key, "key"),
        ca_certificate=_pem_option("--ca-cert", ca_cert, "cert"),
        insecure_policy=kw.pop("insecure_policy") or "",
        **kw,
    )


@create_route.command("passthrough")
@click.argument("name")
@_route_options
@store_options
@pass_context
@handle_errors
def create_passthrough(ctx: Context, name: str, service: str, **kw: Any) -> None:
    """Create a passthrough route: the router reads only the SNI and relays the encrypted stream."""
    if kw.get("path"):
        raise UsageError("--path: not allowed with passthrough (the router cannot see the path)")
    if kw.get("insecure_policy") == "Allow":
        raise UsageError("--insecure-policy Allow: not allowed with passthrough (use None or Redirect)")
    _create_route(ctx, name, "passthrough", service, insecure_policy=kw.pop("insecure_policy") or "", **kw)


@create_route.command("reencrypt")
@click.argument("name")
@_route_options
@click.option("--cert", metavar="FILE", help="Certificate (PEM) served for the host; default: router's.")
@click.option("--key", metavar="FILE", help="Key (PEM) of --cert.")
@click.option("--ca-cert", metavar="FILE", help="CA chain (PEM) served with --cert.")
@click.option(
    "--dest-ca-cert",
    metavar="FILE",
    help="CA (PEM) that signed the backend's certificate; the router verifies the backend against it.",
)
@store_options
@pass_context
@handle_errors
def create_reencrypt(
    ctx: Context,
    name: str,
    service: str,
    cert: str | None,
    key: str | None,
    ca_cert: str | None,
    dest_ca_cert: str | None,
    **kw: Any,
) -> None:
    """Create a reencrypt route: TLS ends at the router, then a new, verified TLS connection to the service.

    \b
    The backend's certificate must chain to --dest-ca-cert (its hostname is not checked), or, without
    it, to the router's --service-ca with the name <service>.<namespace>.svc.
    """
    _create_route(
        ctx,
        name,
        "reencrypt",
        service,
        certificate=_pem_option("--cert", cert, "cert"),
        key=_pem_option("--key", key, "key"),
        ca_certificate=_pem_option("--ca-cert", ca_cert, "cert"),
        destination_ca_certificate=_pem_option("--dest-ca-cert", dest_ca_cert, "cert"),
        insecure_policy=kw.pop("insecure_policy") or "",
        **kw,
    )


@click.group("expose")
def expose() -> None:
    """Expose a service with a plain-HTTP route."""


@expose.command("service")
@click.argument("service")
@click.option("--name", "route_name", help="Route name (default: the service name).")
@click.option("--hostname", default="", help="Host name (default: <name>-<namespace>.<router domain>).")
@click.option("--path", default="", help="Path prefix the route serves.")
@click.option("--port", "target_port", help="Target port: a service port name or number (default: first).")
@store_options
@pass_context
@handle_errors
def expose_service(
    ctx: Context, service: str, route_name: str | None, hostname: str, path: str, target_port: str | None
) -> None:
    """Create a plain-HTTP route for SERVICE, like `oc expose service`."""
    _create_route(
        ctx, route_name or service, "", service, hostname=hostname, path=path, target_port=target_port
    )


# -- apply --------------------------------------------------------------------------------------------


def _read_sources(filenames: tuple[str, ...]) -> list[Document]:
    docs: list[Document] = []
    for filename in filenames:
        if filename == "-":
            docs.extend(load_text(sys.stdin.read(), "<stdin>"))
            continue
        path = Path(filename)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in _MANIFEST_SUFFIXES and p.is_file())
            if not files:
                raise UsageError(f"-f {filename}: no .yaml, .yml or .json files in this directory")
        else:
            files = [path]
        for file in files:
            docs.extend(load_text(read_file_arg("-f", str(file)), str(file)))
    return docs


@click.command("apply")
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    required=True,
    metavar="FILE|DIR|-",
    help="Manifest file, directory of manifests, or - for stdin; repeatable.",
)
@store_options
@pass_context
@handle_errors
def apply(ctx: Context, filenames: tuple[str, ...]) -> None:
    """Create or update every object in the files, all or nothing.

    Reads YAML or JSON: single objects, multi-document streams and `kind: List`, as `oc get -o yaml`
    exports them (Route, Service, EndpointSlice, Endpoints). If any document is invalid, nothing is
    changed and every problem is listed with its document and field.
    """
    docs = _read_sources(filenames)
    if not docs:
        raise ManifestError("no objects in the input")
    problems: list[str] = []
    manifests: list[dict[str, Any]] = []
    for doc in docs:
        manifest = doc.manifest
        meta = manifest.get("metadata")
        if not isinstance(meta, dict):
            # A bare `metadata:` in YAML is null; validation below then names what is missing.
            meta = manifest["metadata"] = {}
        if not meta.get("namespace"):
            meta["namespace"] = ctx.ns
        elif ctx.namespace and meta["namespace"] != ctx.namespace:
            problems.append(
                f"{doc.where}: metadata.namespace {meta['namespace']!r} does not match -n {ctx.namespace!r}"
            )
        # doc.where already names the document and its object, e.g. `f.yaml: document 3 (Route web)`.
        problems.extend(f"{doc.where}: {error}" for error in validate(manifest))
        manifests.append(manifest)
    if problems:
        raise ManifestError(
            "nothing was applied:\n  " + "\n  ".join(problems)
            if len(problems) > 1
            else f"nothing was applied: {problems[0]}"
        )
    for result in ctx.store.apply(manifests):
        meta = result.manifest["metadata"]
        click.echo(f"{kind_label(result.manifest['kind'])}/{meta['name']} {result.action}")


# -- delete, annotate ---------------------------------------------------------------------------------


@click.command("delete")
@click.argument("resource")
@click.argument("names", nargs=-1, required=True)
@store_options
@pass_context
@handle_errors
def delete(ctx: Context, resource: str, names: tuple[str, ...]) -> None:
    """Delete routes or services (a service takes its endpoint slices with it)."""
    kind = resource_kind(resource, (KIND_ROUTE, KIND_SERVICE, KIND_ENDPOINTSLICE))
    for name in names:
        ctx.store.delete(kind, ctx.ns, name)
        click.echo(f'{kind_label(kind)} "{name}" deleted')
        if kind == KIND_SERVICE:
            slices = ctx.store.list(KIND_ENDPOINTSLICE, ctx.ns, f"{SERVICE_NAME_LABEL}={name}").items
            for item in slices:
                with contextlib.suppress(NotFoundError):  # someone else removed it meanwhile
                    ctx.store.delete(KIND_ENDPOINTSLICE, ctx.ns, item["metadata"]["name"])


def _parse_annotation_args(pairs: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    sets: dict[str, str] = {}
    removes: list[str] = []
    for pair in pairs:
        if "=" in pair:
            key, value = pair.split("=", 1)
            if not key:
                raise UsageError(f"{pair}: empty annotation name")
            sets[key] = value
        elif pair.endswith("-") and len(pair) > 1:
            removes.append(pair[:-1])
        else:
            raise UsageError(f"{pair}: expected KEY=VALUE to set or KEY- to remove")
    return sets, removes


@click.command("annotate")
@click.argument("resource")
@click.argument("name")
@click.argument("pairs", nargs=-1, required=True)
@click.option("--overwrite", is_flag=True, help="Replace annotations that already have a value.")
@store_options
@pass_context
@handle_errors
def annotate(ctx: Context, resource: str, name: str, pairs: tuple[str, ...], overwrite: bool) -> None:
    """Set (KEY=VALUE) or remove (KEY-) annotations on a route or service.

    \b
    shiftroute annotate route web haproxy.router.openshift.io/balance=roundrobin
    shiftroute annotate route web haproxy.router.openshift.io/balance-
    """
    kind = resource_kind(resource, (KIND_ROUTE, KIND_SERVICE))
    sets, removes = _parse_annotation_args(pairs)
    for _attempt in range(5):
        manifest = ctx.store.get(kind, ctx.ns, name)
        # `annotations:` left empty in a hand-written manifest is stored as null.
        current = manifest["metadata"].get("annotations") or {}
        manifest["metadata"]["annotations"] = current
        for key, value in sets.items():
            if key in current and current[key] != value and not overwrite:
                raise UsageError(f"{key} already has a value ({current[key]}), and --overwrite is false")
            current[key] = value
        for key in removes:
            current.pop(key, None)
        errors = validate(manifest)
        if errors:
            raise ValidationError(f"{resource} {name}", errors)
        try:
            ctx.store.update(manifest)
        except ConflictError:
            continue  # changed between our read and write: read again
        click.echo(f"{kind_label(kind)}/{name} annotated")
        return
    raise ConflictError(f"{resource} {name} kept changing while annotating; try again")
