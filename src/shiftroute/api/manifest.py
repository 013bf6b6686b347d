"""Loading and dumping manifests: YAML or JSON, single objects, multi-document streams and `kind: List`.

Everything a document holds is kept (routes.md §1: unknown fields are kept, not rejected). Endpoints (v1)
objects are mirrored into EndpointSlices on the way in, as Kubernetes' mirroring controller does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from shiftroute.api.objects import (
    API_VERSIONS,
    KIND_ENDPOINTSLICE,
    MANAGED_BY_LABEL,
    MIRRORED_BY,
    SERVICE_NAME_LABEL,
    Manifest,
)
from shiftroute.api.validation import shown
from shiftroute.errors import ManifestError

SUPPORTED_KINDS = ("Route", "Service", "EndpointSlice", "Endpoints")


@dataclass(frozen=True, slots=True)
class Document:
    """One object read from input, with where it came from for error messages."""

    where: str
    manifest: Manifest


def describe(manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata") if isinstance(manifest.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    kind = manifest.get("kind") or "?"
    name = meta.get("name") or "?"
    ns = meta.get("namespace")
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings (creationTimestamp must round-trip as RFC 3339 text)."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_documents(text: str, source: str = "<input>") -> list[Document]:
    """Parse YAML (which includes JSON) into documents; `kind: List` is flattened into its items."""
    try:
        raw_docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML or JSON"
        raise ManifestError(f"{source}{at}: {problem}") from None
    docs: list[Document] = []
    for index, raw in enumerate(raw_docs, start=1):
        if raw is None:
            continue  # an empty document between `---` separators
        where = f"{source}: document {index}"
        if not isinstance(raw, dict):
            raise ManifestError(
                f"{where}: expected an object with apiVersion and kind, got {type(raw).__name__}"
            )
        if str(raw.get("kind", "")).endswith("List") and "items" in raw:
            items = raw.get("items") or []
            if not isinstance(items, list):
                raise ManifestError(f"{where}: items: expected a list")
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise ManifestError(f"{where}, items[{i}]: expected an object")
                docs.append(Document(f"{where}, items[{i}]", item))
        else:
            docs.append(Document(where, raw))
    return docs


def normalize(doc: Document) -> list[Document]:
    """Check the kind and apiVersion; turn Endpoints into EndpointSlices. Raises ManifestError."""
    manifest = doc.manifest
    kind = manifest.get("kind")
    where = f"{doc.where} ({describe(manifest)})"
    if kind not in SUPPORTED_KINDS:
        raise ManifestError(
            f"{where}: kind {shown(kind)} is not supported; shiftroute reads {', '.join(SUPPORTED_KINDS)}"
        )
    if kind == "Endpoints":
        return [Document(where, m) for m in endpoints_to_slices(manifest)]
    expected = API_VERSIONS[str(kind)]
    api_version = manifest.get("apiVersion")
    if api_version != expected:
        raise ManifestError(
            f"{where}: apiVersion: expected {expected!r} for kind {kind}, got {shown(api_version)}"
        )
    return [Document(where, manifest)]


def load_text(text: str, source: str = "<input>") -> list[Document]:
    out: list[Document] = []
    for doc in parse_documents(text, source):
        out.extend(normalize(doc))
    return out


def endpoints_to_slices(endpoints: Mapping[str, Any]) -> list[Manifest]:
    """Mirror a v1 Endpoints object into EndpointSlices, one per subset (Kubernetes does the same).

    `addresses` become ready endpoints and `notReadyAddresses` not-ready ones; targetRef is kept so the
    endpoint ID stays `pod:...` for pod-backed addresses (routes.md §5).
    """
    meta = endpoints.get("metadata") if isinstance(endpoints.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    name = str(meta.get("name", ""))
    subsets = endpoints.get("subsets") or []
    if not isinstance(subsets, list):
        raise ManifestError(f"Endpoints {name}: subsets: expected a list")
    slices: list[Manifest] = []
    for index, subset in enumerate(s for s in subsets if isinstance(s, Mapping)):
        entries: list[dict[str, Any]] = []
        for field_name, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.get(field_name) or []:
                if not isinstance(address, Mapping):
                    continue
                entry: dict[str, Any] = {"addresses": [address.get("ip", "")], "conditions": {"ready": ready}}
                if isinstance(address.get("targetRef"), Mapping):
                    entry["targetRef"] = dict(address["targetRef"])
                entries.append(entry)
        ports = [
            {k: p[k] for k in ("name", "port", "protocol", "appProtocol") if k in p}
            for p in (subset.get("ports") or [])
            if isinstance(p, Mapping)
        ]
        labels = {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MIRRORED_BY}
        slice_meta: dict[str, Any] = {
            "name": name if index == 0 else f"{name}-{index}",
            "namespace": meta.get("namespace", ""),
            "labels": labels,
        }
        slices.append(
            {
                "apiVersion": API_VERSIONS[KIND_ENDPOINTSLICE],
                "kind": KIND_ENDPOINTSLICE,
                "metadata": slice_meta,
                "addressType": "IPv6" if any(":" in str(e["addresses"][0]) for e in entries) else "IPv4",
                "endpoints": entries,
                "ports": ports,
            }
        )
    return slices


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # PEM blocks and other multi-line strings are dumped as literal blocks, as `oc get -o yaml` shows them.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, _str_presenter)


def dump_yaml(objects: Iterable[Mapping[str, Any]], as_list: bool) -> str:
    items = [dict(o) for o in objects]
    data: Any = {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}} if as_list else items[0]
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def dump_json(objects: Iterable[Mapping[str, Any]], as_list: bool) -> str:
    items = [dict(o) for o in objects]
    data: Any = {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}} if as_list else items[0]
    return json.dumps(data, indent=4) + "\n"
