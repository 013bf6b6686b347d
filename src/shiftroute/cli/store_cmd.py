"""`shiftroute store ...`: commands about the store itself (for now: migrate between stores)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import click

from shiftroute.api.objects import Manifest
from shiftroute.cli.common import Context, handle_errors, pass_context, store_options
from shiftroute.errors import UsageError
from shiftroute.store import Store, open_store, resolve_store_url
from shiftroute.store.base import key_of

# Services and their endpoints before the routes that point at them, so a router watching the target
# while it fills never sees a route to a service that is not there yet.
KINDS = ("Service", "EndpointSlice", "Route", "Router")
_PLURAL = {"Service": "services", "EndpointSlice": "endpointslices", "Route": "routes", "Router": "routers"}


@dataclass
class MigrateReport:
    copied: Counter[str] = field(default_factory=Counter)
    replaced: int = 0
    with_status: int = 0

    def summary(self) -> str:
        counts = ", ".join(f"{self.copied[k]} {_PLURAL[k]}" for k in KINDS)
        extra = f"; {self.replaced} replaced" if self.replaced else ""
        return f"{counts} ({self.with_status} with status{extra})"


@click.group("store")
def store() -> None:
    """Manage the store itself (SQLite file or etcd cluster)."""


@store.command("migrate")
@click.option(
    "--from", "source_url", metavar="URL", help="Store to copy from (default: the current --store)."
)
@click.option("--to", "target_url", metavar="URL", required=True, help="Store to copy into.")
@click.option("--overwrite", is_flag=True, help="Replace target objects that have the same name.")
@click.option("--dry-run", is_flag=True, help="Count what would be copied; write nothing.")
@click.option("--etcd-cacert", envvar="SHIFTROUTE_ETCD_CACERT", metavar="FILE", help="CA for etcds:// URLs.")
@click.option("--etcd-cert", envvar="SHIFTROUTE_ETCD_CERT", metavar="FILE", help="Client certificate.")
@click.option("--etcd-key", envvar="SHIFTROUTE_ETCD_KEY", metavar="FILE", help="Client certificate's key.")
@store_options
@pass_context
@handle_errors
def migrate(
    ctx: Context,
    source_url: str | None,
    target_url: str,
    overwrite: bool,
    dry_run: bool,
    etcd_cacert: str | None,
    etcd_cert: str | None,
    etcd_key: str | None,
) -> None:
    """Copy every object (services, endpoint slices, routes, routers) with its status to another store.

    \b
    Example, from the default SQLite file to a 3-member etcd cluster:
      shiftroute store migrate --to etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379

    Each object keeps its uid and creationTimestamp (route host claims are decided by age); it gets a new
    resourceVersion and generation 1 in the target, and its status is written after it. Stop the routers
    and writers of the source first: the copy is not one transaction.

    By default the target must hold none of these objects, and nothing is written if it does. With
    --overwrite, target objects with the same kind, namespace and name are replaced by the source's; objects
    only in the target are kept. Rerunning with --overwrite after an interrupted copy finishes it.
    """
    source_name = resolve_store_url(source_url or ctx.store_url)
    if source_name == target_url:
        raise UsageError(f"--from and --to are the same store ({target_url})")
    tls = {"etcd_cacert": etcd_cacert, "etcd_cert": etcd_cert, "etcd_key": etcd_key}
    source = open_store(source_name, **_tls_for(source_name, tls))
    try:
        target = open_store(target_url, **_tls_for(target_url, tls))
        try:
            report = copy_objects(source, target, overwrite=overwrite, dry_run=dry_run)
        finally:
            target.close()
    finally:
        source.close()
    verb = "would copy" if dry_run else "copied"
    click.echo(f"{verb} {report.summary()} from {source.url} to {target.url}")


def _tls_for(url: str, tls: dict[str, str | None]) -> dict[str, str | None]:
    """TLS files go to etcds:// stores only (the same options serve either side)."""
    return tls if url.startswith("etcds://") else {}


def copy_objects(source: Store, target: Store, *, overwrite: bool, dry_run: bool) -> MigrateReport:
    objects = {kind: source.list(kind).items for kind in KINDS}
    existing = {kind: {key_of(m) for m in target.list(kind).items} for kind in KINDS}
    held = Counter({kind: len(keys) for kind, keys in existing.items() if keys})
    if held and not overwrite:
        what = ", ".join(f"{n} {_PLURAL[k]}" for k, n in held.items())
        raise UsageError(
            f"{target.url} already holds objects ({what}): nothing was copied; use --overwrite to replace "
            "objects of the same name (objects only in the target are kept)"
        )
    report = MigrateReport()
    for kind in KINDS:
        for manifest in objects[kind]:
            replace = key_of(manifest) in existing[kind]
            if not dry_run:
                _copy_one(target, manifest, replace)
            report.copied[kind] += 1
            report.replaced += replace
            report.with_status += "status" in manifest
    return report


def _copy_one(target: Store, manifest: Manifest, replace: bool) -> None:
    key = key_of(manifest)
    if replace:
        # Delete and create rather than update, so uid and creationTimestamp come from the source.
        target.delete(key.kind, key.namespace, key.name)
    created = target.create(manifest)
    if "status" in manifest:
        target.update_status(
            key.kind, key.namespace, key.name, manifest["status"], created["metadata"]["resourceVersion"]
        )
