"""`shiftroute pki`: make a CA, sign a server certificate, inspect a certificate."""

from __future__ import annotations

from pathlib import Path

import click

from shiftroute.cli.common import handle_errors, read_file_arg
from shiftroute.errors import PKIError, UsageError
from shiftroute.pki.issue import KEY_TYPES, make_ca, make_leaf, parse_sans, read_pair, write_pair
from shiftroute.pki.pem import load_certificates, summarize

_key_type = click.option(
    "--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True, help="Key algorithm."
)
_out_dir = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory to write NAME.crt and NAME.key in.",
)


@click.group("pki")
def pki() -> None:
    """Certificates for routes and backends: make a CA, sign certificates with it, inspect them."""


def _refuse_overwrite(directory: Path, name: str, force: bool) -> None:
    for suffix in (".crt", ".key"):
        path = directory / f"{name}{suffix}"
        if path.exists() and not force:
            raise UsageError(f"{path} already exists (use --force to replace it)")


@pki.command("ca")
@click.argument("name")
@click.option("--cn", help="Common name (default: NAME).")
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True)
@_key_type
@_out_dir
@click.option("--force", is_flag=True, help="Replace existing files.")
@handle_errors
def ca(name: str, cn: str | None, days: int, key_type: str, directory: Path, force: bool) -> None:
    """Make a CA: NAME.crt (basicConstraints CA:true, keyCertSign) and NAME.key (mode 0600)."""
    _refuse_overwrite(directory, name, force)
    cert_path, key_path = write_pair(make_ca(cn or name, days, key_type), directory, name)
    click.echo(f"wrote {cert_path} and {key_path}")


@pki.command("cert")
@click.argument("name")
@click.option("--ca", "ca_name", required=True, help="CA to sign with: reads CA_NAME.crt and CA_NAME.key.")
@click.option("--cn", help="Common name (default: NAME).")
@click.option(
    "--san", default="", help="Subject alternative names: DNS:a.example.com,IP:127.0.0.1 (default: DNS:<cn>)."
)
@click.option("--days", type=click.IntRange(1, 36500), default=825, show_default=True)
@_key_type
@_out_dir
@click.option("--force", is_flag=True, help="Replace existing files.")
@handle_errors
def cert(
    name: str, ca_name: str, cn: str | None, san: str, days: int, key_type: str, directory: Path, force: bool
) -> None:
    """Make a server certificate NAME.crt / NAME.key signed by CA_NAME.

    CA_NAME is a path prefix: `--ca RootCA` reads RootCA.crt and RootCA.key.
    """
    _refuse_overwrite(directory, name, force)
    issuer = read_pair(Path(f"{ca_name}.crt"), Path(f"{ca_name}.key"))
    if not issuer.cert.extensions or not summarize(issuer.cert).is_ca:
        raise PKIError(f"{ca_name}.crt is not a CA certificate (basicConstraints CA:true)")
    leaf = make_leaf(issuer, cn or name, parse_sans(san), days, key_type)
    cert_path, key_path = write_pair(leaf, directory, name)
    click.echo(f"wrote {cert_path} and {key_path}")


@pki.command("inspect")
@click.argument("file")
@handle_errors
def inspect(file: str) -> None:
    """Print subject, issuer, SANs, validity, key type and SHA-256 fingerprint of each certificate."""
    certs = load_certificates(read_file_arg("inspect", file), file)
    for index, certificate in enumerate(certs):
        s = summarize(certificate)
        if len(certs) > 1:
            click.echo(f"# certificate {index + 1} of {len(certs)}")
        problem = s.validity_problem()
        click.echo(f"Subject:      {s.subject or '(empty)'}")
        click.echo(f"Issuer:       {s.issuer or '(empty)'}")
        click.echo(f"SANs:         {', '.join(s.sans) or 'none'}")
        click.echo(f"Not before:   {s.not_before:%Y-%m-%d %H:%M:%SZ}")
        click.echo(f"Not after:    {s.not_after:%Y-%m-%d %H:%M:%SZ}" + (f"  ({problem})" if problem else ""))
        click.echo(f"Key:          {s.key_type}")
        click.echo(f"Signature:    {s.signature_hash}")
        click.echo(f"CA:           {'yes' if s.is_ca else 'no'}")
        click.echo(f"Version:      X.509 v{s.version}")
        click.echo(f"Serial:       {s.serial}")
        click.echo(f"SHA-256:      {s.fingerprint}")
