"""The `shiftroute` command: `oc`-shaped object commands, certificates, and (later) the router."""

from __future__ import annotations

import sys

import click

from shiftroute import __version__
from shiftroute.cli.common import Context, store_options
from shiftroute.cli.demo import demo
from shiftroute.cli.demo_app import demo_app
from shiftroute.cli.diagnose import diagnose
from shiftroute.cli.pki import pki
from shiftroute.cli.resources import annotate, apply, create, delete, expose
from shiftroute.cli.serve import serve
from shiftroute.cli.show import describe, get
from shiftroute.cli.store_cmd import store


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="shiftroute")
@store_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """shiftroute: OpenShift-style routes (edge, passthrough, reencrypt) outside OpenShift.

    \b
    Objects live in a store (default: a SQLite file under $XDG_STATE_HOME/shiftroute); routers watch it.
    Quick start:
      shiftroute create service web --port 8080 --endpoint 127.0.0.1:8080
      shiftroute create route edge web --service web
      shiftroute get routes
    """
    ctx.ensure_object(Context)
    ctx.call_on_close(ctx.obj.close)


for command in (
    create,
    expose,
    apply,
    get,
    describe,
    delete,
    annotate,
    diagnose,
    pki,
    store,
    serve,
    demo,
    demo_app,
):
    cli.add_command(command)


def main() -> None:
    try:
        cli(prog_name="shiftroute")
    except KeyboardInterrupt:
        sys.exit(130)
