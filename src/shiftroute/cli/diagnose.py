"""`shiftroute diagnose route NAME`: why a route does or does not serve."""

from __future__ import annotations

import sys

import click

from shiftroute.cli.common import (
    Context,
    echo_lines,
    handle_errors,
    pass_context,
    read_file_arg,
    store_options,
)
from shiftroute.diagnose import Options, diagnose_route
from shiftroute.diagnose.facts import load_facts, parse_router_url
from shiftroute.diagnose.render import render_json, render_text
from shiftroute.errors import PKIError, UsageError
from shiftroute.pki.pem import load_certificates


@click.group("diagnose")
def diagnose() -> None:
    """Explain why a route does or does not serve."""


@diagnose.command("route")
@click.argument("name")
@click.option(
    "--router",
    "router_url",
    metavar="URL",
    help="Send the final request to this listener: https://HOST:PORT (the HTTPS listener) or "
    "http://HOST:PORT (the HTTP one). Default: the live router registered in the store.",
)
@click.option(
    "--service-ca",
    type=click.Path(exists=True, dir_okay=False),
    help="The router's --service-ca, to verify reencrypt routes that have no destinationCACertificate.",
)
@click.option(
    "--no-sni",
    is_flag=True,
    help="Send the final request without SNI, as a client connecting to an IP address does.",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@store_options
@pass_context
@handle_errors
def diagnose_route_command(
    ctx: Context, name: str, router_url: str | None, service_ca: str | None, no_sni: bool, output: str
) -> None:
    """Check route NAME link by link and stop at the first that fails.

    \b
    1 route exists          5 ready endpoints for the route's target port
    2 admitted (verdicts)   6 TCP connect to each endpoint
    3 a live router         7 backend protocol: reencrypt: TLS whose chain verifies against the route's
    4 service exists          destination CA; passthrough: TLS for the SNI; edge/plain: plain HTTP
                            8 a real request through the router (SNI and Host set), expecting no 503
    \b
    Each check prints PASS or FAIL with a reason; a failure also prints how to fix it.
    Exit status: 0 when every check passes, 1 otherwise.
    """
    options = Options(
        router=parse_router_url(router_url) if router_url else None,
        service_ca_pem=_service_ca(service_ca),
        sni=not no_sni,
    )
    diagnosis = diagnose_route(load_facts(ctx.store, ctx.ns, name), options)
    if output == "json":
        click.echo(render_json(diagnosis))
    else:
        echo_lines(render_text(diagnosis))
    sys.exit(0 if diagnosis.ok else 1)


def _service_ca(path: str | None) -> str:
    if not path:
        return ""
    text = read_file_arg("--service-ca", path)
    try:
        load_certificates(text, "--service-ca")
    except PKIError as exc:
        raise UsageError(str(exc)) from None
    return text
