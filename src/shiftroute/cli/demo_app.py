"""`shiftroute demo-app`: the "Hello" application of the walkthrough, reusable as a test backend."""

from __future__ import annotations

import ssl
from pathlib import Path

import click

from shiftroute.cli.common import handle_errors
from shiftroute.demo.app import AppConfig, main
from shiftroute.errors import UsageError


@click.command("demo-app")
@click.option(
    "--cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Certificate (PEM) to serve HTTPS with; e.g. one made by `shiftroute pki cert`.",
)
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Key of --cert.")
@click.option("--plain", is_flag=True, help="Serve plain HTTP instead of HTTPS (a backend for edge routes).")
@click.option(
    "--port", type=click.IntRange(0, 65535), required=True, help="Port to listen on (0 picks a free one)."
)
@click.option("--bind", default="127.0.0.1", show_default=True, metavar="ADDR", help="Address to listen on.")
@click.option("--text", default="Hello", show_default=True, help="What every request is answered with.")
@handle_errors
def demo_app(cert: Path | None, key: Path | None, plain: bool, port: int, bind: str, text: str) -> None:
    """A small "Hello" application over HTTPS (--cert/--key) or plain HTTP (--plain).

    \b
    Every request gets TEXT back, plus headers telling what the application saw:
      X-Demo-App-TLS              TLS version of the connection it received, or none
      X-Demo-App-Cipher           cipher of that connection, or none
      X-Demo-App-SNI              server name the client (the router, for reencrypt) sent, or none
      X-Demo-App-Forwarded-For    the X-Forwarded-For header it received, or none
      X-Demo-App-Forwarded-Proto  the X-Forwarded-Proto header it received, or none
      X-Demo-App-Host             the Host header it received
    \b
    shiftroute demo-app --cert app.crt --key app.key --port 9443
    shiftroute demo-app --plain --port 8081 --text "Hello from edge"
    Stops on Ctrl-C or SIGTERM.
    """
    if plain and (cert or key):
        raise UsageError("--plain serves plain HTTP: leave out --cert and --key")
    if not plain and not (cert and key):
        raise UsageError("give --cert and --key to serve HTTPS, or --plain for plain HTTP")
    if not plain:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
        except ssl.SSLError as exc:
            raise UsageError(f"--cert {cert} / --key {key}: cannot be loaded: {exc.reason or exc}") from None
    try:
        main(AppConfig(bind, port, text, str(cert) if cert else None, str(key) if key else None))
    except OSError as exc:
        raise UsageError(f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None
