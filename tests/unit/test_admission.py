"""Admission (routes.md §3): every reason, host claims by age, re-admission, wildcard ownership, extended
certificate validation, and the same verdicts for the same input in any order."""

from __future__ import annotations

import functools
import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shiftroute.admission import (
    EXTENDED_VALIDATION_FAILED,
    HOST_ALREADY_CLAIMED,
    INVALID_HOST,
    NO_HOST_VALUE,
    ROUTE_NOT_ADMITTED,
    RouterOptions,
    Verdict,
    admit,
)
from shiftroute.api.objects import ObjectKey, Route
from shiftroute.pki.issue import make_ca, make_leaf
from tests.conftest import require_binary

OPTS = RouterOptions(domain="apps.example.com")
T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def stamp(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def mk(
    name: str,
    ns: str = "team-a",
    host: str = "www.example.com",
    *,
    age: int = 0,
    uid: str | None = None,
    path: str = "",
    tls: dict[str, Any] | None = None,
    wildcard: bool = False,
    subdomain: str = "",
    annotations: dict[str, str] | None = None,
) -> Route:
    """A route created `age` minutes after T0 (smaller is older)."""
    spec: dict[str, Any] = {"host": host, "to": {"kind": "Service", "name": "web", "weight": 100}}
    if path:
        spec["path"] = path
    if tls:
        spec["tls"] = tls
    if subdomain:
        spec["subdomain"] = subdomain
    if wildcard:
        spec["wildcardPolicy"] = "Subdomain"
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": uid or f"uid-{ns}-{name}",
        "creationTimestamp": stamp(age),
        "annotations": annotations or {},
    }
    return Route.from_manifest(
        {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": meta, "spec": spec}
    )


def verdicts(routes: list[Route], options: RouterOptions = OPTS) -> dict[str, Verdict]:
    """Verdicts keyed `namespace/name`."""
    return {f"{k.namespace}/{k.name}": v for k, v in admit(routes, options).items()}


def admitted(routes: list[Route], options: RouterOptions = OPTS) -> set[str]:
    return {k for k, v in verdicts(routes, options).items() if v.admitted}


def reason(routes: list[Route], who: str, options: RouterOptions = OPTS) -> str:
    return verdicts(routes, options)[who].reason


# -- certificate material --------------------------------------------------------------------------------


@functools.cache
def certs() -> dict[str, str]:
    ca = make_ca("Route CA")
    other_ca = make_ca("Other CA")
    leaf = make_leaf(ca, "www.example.com", [])
    other = make_leaf(ca, "other.example.com", [])
    expired = make_leaf(ca, "old.example.com", [], days=1, not_before=T0 - timedelta(days=400))
    return {
        "ca": ca.cert_pem(),
        "other_ca": other_ca.cert_pem(),
        "cert": leaf.cert_pem(),
        "key": leaf.key_pem(),
        "other_key": other.key_pem(),
        "expired_cert": expired.cert_pem(),
        "expired_key": expired.key_pem(),
    }


@pytest.fixture(scope="module")
def sha1_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA (RSA) and a leaf it signed with SHA-1, made with the openssl CLI (cryptography refuses SHA-1)."""
    openssl = require_binary("openssl")
    d: Path = tmp_path_factory.mktemp("sha1")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "30",
        "-subj",
        "/CN=SHA1 Test CA",
        "-sha256",
    )
    run(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=www.example.com",
    )
    run(
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-sha1",
        "-days",
        "30",
        "-out",
        "leaf.crt",
    )
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "self.key",
        "-out",
        "self.crt",
        "-days",
        "30",
        "-subj",
        "/CN=www.example.com",
        "-sha1",
    )
    text = subprocess.run(
        [openssl, "x509", "-in", "leaf.crt", "-noout", "-text"],
        cwd=d,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "sha1WithRSAEncryption" in text  # the fixture really made what the tests need
    return {n: (d / n).read_text() for n in ("ca.crt", "leaf.crt", "leaf.key", "self.crt", "self.key")}


def secret_lines() -> list[str]:
    keys = [certs()["key"], certs()["other_key"], certs()["expired_key"]]
    return [ln for k in keys for ln in k.splitlines() if ln and not ln.startswith("-----")]


def assert_clean(message: str) -> None:
    """No line of a key's body; naming the PEM markers a field lacks is fine."""
    assert not any(line in message for line in secret_lines()), message


# -- host: generated, subdomain, invalid, missing ---------------------------------------------------------


def test_generated_host_is_name_dash_namespace_dot_domain() -> None:
    v = verdicts([mk("web", "shop", host="")])["shop/web"]
    assert v.admitted and v.host == "web-shop.apps.example.com"


def test_subdomain_host() -> None:
    v = verdicts([mk("web", "shop", host="", subdomain="store")])["shop/web"]
    assert v.admitted and v.host == "store.apps.example.com"


def test_host_is_lowercased_and_trailing_dot_removed() -> None:
    assert verdicts([mk("web", host="WWW.Example.com.")])["team-a/web"].host == "www.example.com"


@pytest.mark.parametrize(
    ("route", "expected_reason"),
    [
        pytest.param(mk("a" * 40, "b" * 30, host=""), INVALID_HOST, id="generated-host-label-over-63-chars"),
        pytest.param(mk("web", host="bad_host.example.com"), INVALID_HOST, id="host-with-underscore"),
        pytest.param(mk("web", host="x" * 64 + ".example.com"), INVALID_HOST, id="host-label-64-chars"),
        pytest.param(mk("web", host="", subdomain="a" * 64), INVALID_HOST, id="subdomain-label-64-chars"),
    ],
)
def test_invalid_host(route: Route, expected_reason: str) -> None:
    v = admit([route], OPTS)[route.key]
    assert not v.admitted
    assert v.reason == expected_reason
    assert "63" in v.message or "DNS-1123" in v.message
    assert v.host in v.message  # the user sees which host was refused


def test_no_host_value_with_empty_router_domain() -> None:
    options = RouterOptions(domain="")
    v = verdicts([mk("web", host=""), mk("sub", host="", subdomain="x")], options)
    assert v["team-a/web"].reason == NO_HOST_VALUE
    assert v["team-a/sub"].reason == NO_HOST_VALUE
    # A route with an explicit host does not need the domain.
    assert verdicts([mk("web")], options)["team-a/web"].admitted


# -- domains and wildcard policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "host", "ok"),
    [
        pytest.param(
            RouterOptions(denied_domains=("example.com",)), "www.example.com", False, id="denied-domain"
        ),
        pytest.param(
            RouterOptions(denied_domains=("*.example.com",)), "a.b.example.com", False, id="denied-wild"
        ),
        pytest.param(
            RouterOptions(denied_domains=("example.org",)), "www.example.com", True, id="other-denied"
        ),
        pytest.param(
            RouterOptions(allowed_domains=("example.org",)), "www.example.com", False, id="not-allowed"
        ),
        pytest.param(RouterOptions(allowed_domains=("example.com",)), "www.example.com", True, id="allowed"),
        pytest.param(
            RouterOptions(allowed_domains=("ample.com",)), "www.example.com", False, id="suffix-not-label"
        ),
        pytest.param(
            RouterOptions(allowed_domains=("example.com",), denied_domains=("www.example.com",)),
            "www.example.com",
            False,
            id="denied-wins-over-allowed",
        ),
    ],
)
def test_allowed_and_denied_domains(options: RouterOptions, host: str, ok: bool) -> None:
    v = verdicts([mk("web", host=host)], options)["team-a/web"]
    assert v.admitted is ok
    if not ok:
        assert v.reason == ROUTE_NOT_ADMITTED
        assert host in v.message


def test_wildcard_route_not_admitted_unless_router_allows_it() -> None:
    route = mk("wild", host="www.example.com", wildcard=True)
    v = verdicts([route])["team-a/wild"]
    assert (v.admitted, v.reason) == (False, ROUTE_NOT_ADMITTED)
    assert "wildcard" in v.message
    assert verdicts([route], RouterOptions(allow_wildcard_routes=True))["team-a/wild"].admitted


def test_wildcard_route_needs_a_parent_domain_of_two_labels() -> None:
    v = verdicts([mk("wild", host="example.com", wildcard=True)], RouterOptions(allow_wildcard_routes=True))
    assert v["team-a/wild"].reason == INVALID_HOST


# -- host claims -------------------------------------------------------------------------------------------


def test_older_route_in_another_namespace_owns_the_host() -> None:
    routes = [mk("new", "team-b", age=5), mk("old", "team-a", age=1)]
    v = verdicts(routes)
    assert v["team-a/old"].admitted
    assert v["team-b/new"].reason == HOST_ALREADY_CLAIMED
    assert "team-a/old" in v["team-b/new"].message


def test_other_namespace_is_refused_even_on_a_different_path() -> None:
    routes = [mk("old", "team-a", age=1, path="/a"), mk("new", "team-b", age=5, path="/b")]
    assert reason(routes, "team-b/new") == HOST_ALREADY_CLAIMED


def test_same_namespace_same_path_oldest_wins() -> None:
    routes = [mk("second", age=2, path="/api"), mk("first", age=1, path="/api")]
    v = verdicts(routes)
    assert v["team-a/first"].admitted
    assert v["team-a/second"].reason == HOST_ALREADY_CLAIMED
    assert "team-a/first" in v["team-a/second"].message


def test_same_namespace_different_paths_share_the_host() -> None:
    routes = [mk("root", age=1), mk("api", age=2, path="/api"), mk("static", age=3, path="/static")]
    assert admitted(routes) == {"team-a/root", "team-a/api", "team-a/static"}


def test_root_path_and_no_path_are_the_same_path() -> None:
    routes = [mk("a", age=1, path="/"), mk("b", age=2)]
    assert reason(routes, "team-a/b") == HOST_ALREADY_CLAIMED


def test_claim_order_is_creation_timestamp_first() -> None:
    # The older route wins although its uid and name sort later.
    routes = [mk("aaa", "team-b", uid="0000", age=9), mk("zzz", "team-a", uid="ffff", age=1)]
    assert admitted(routes) == {"team-a/zzz"}


def test_claim_order_ties_broken_by_smaller_uid() -> None:
    routes = [mk("aaa", "team-a", uid="uid-2", age=3), mk("zzz", "team-b", uid="uid-1", age=3)]
    v = verdicts(routes)
    assert v["team-b/zzz"].admitted
    assert v["team-a/aaa"].reason == HOST_ALREADY_CLAIMED


def test_displaced_route_is_admitted_again_when_the_holder_is_deleted() -> None:
    holder = mk("holder", "team-a", age=1)
    waiting = mk("waiting", "team-b", age=2)
    same_ns = mk("same-ns", "team-a", age=3)
    first = verdicts([holder, waiting, same_ns])
    assert first["team-a/holder"].admitted
    assert first["team-b/waiting"].reason == HOST_ALREADY_CLAIMED
    assert first["team-a/same-ns"].reason == HOST_ALREADY_CLAIMED
    # The holder is deleted: the next oldest takes the host, with no manual step.
    second = verdicts([waiting, same_ns])
    assert second["team-b/waiting"].admitted
    assert second["team-a/same-ns"].reason == HOST_ALREADY_CLAIMED
    assert "team-b/waiting" in second["team-a/same-ns"].message


def test_rejected_route_claims_nothing() -> None:
    broken = mk("broken", "team-a", age=1, tls={"termination": "edge", "certificate": "junk", "key": "junk"})
    good = mk("good", "team-b", age=2)
    v = verdicts([broken, good])
    assert v["team-a/broken"].reason == EXTENDED_VALIDATION_FAILED
    assert v["team-b/good"].admitted


EDGE = {"termination": "edge"}
REENCRYPT = {"termination": "reencrypt", "destinationCACertificate": ""}  # filled in the test
PASSTHROUGH = {"termination": "passthrough"}


@pytest.mark.parametrize(
    ("first", "second", "share"),
    [
        pytest.param((None, ""), (PASSTHROUGH, ""), True, id="plain-http-and-passthrough-share"),
        pytest.param((PASSTHROUGH, ""), (None, ""), True, id="passthrough-and-plain-http-share"),
        pytest.param((PASSTHROUGH, ""), (PASSTHROUGH, ""), False, id="two-passthrough-conflict"),
        pytest.param((PASSTHROUGH, ""), (EDGE, "/api"), False, id="passthrough-and-edge-other-path-conflict"),
        pytest.param((EDGE, "/api"), (PASSTHROUGH, ""), False, id="edge-and-passthrough-conflict"),
        pytest.param((EDGE, ""), (EDGE, "/api"), True, id="edge-different-paths-share"),
        pytest.param((EDGE, ""), (None, ""), False, id="edge-and-http-same-path-conflict"),
        pytest.param((EDGE, "/a"), (None, "/b"), True, id="edge-and-http-different-paths-share"),
        pytest.param((EDGE, "/a"), ("reencrypt", "/b"), True, id="edge-and-reencrypt-different-paths-share"),
    ],
)
def test_which_routes_share_a_host(first: tuple[Any, str], second: tuple[Any, str], share: bool) -> None:
    def tls_of(spec: Any) -> dict[str, Any] | None:
        if spec == "reencrypt":
            return {"termination": "reencrypt", "destinationCACertificate": certs()["ca"]}
        return spec  # type: ignore[no-any-return]

    routes = [
        mk("one", age=1, tls=tls_of(first[0]), path=first[1]),
        mk("two", age=2, tls=tls_of(second[0]), path=second[1]),
    ]
    v = verdicts(routes)
    assert v["team-a/one"].admitted
    assert v["team-a/two"].admitted is share
    if not share:
        assert v["team-a/two"].reason == HOST_ALREADY_CLAIMED


def test_disable_namespace_ownership_check() -> None:
    options = RouterOptions(disable_namespace_ownership_check=True)
    routes = [
        mk("old", "team-a", age=1, path="/a"),
        mk("new", "team-b", age=2, path="/b"),
        mk("dup", "team-c", age=3, path="/a"),
    ]
    v = verdicts(routes, options)
    assert v["team-a/old"].admitted
    assert v["team-b/new"].admitted  # any namespace may claim a distinct path
    assert v["team-c/dup"].reason == HOST_ALREADY_CLAIMED  # the same path is still the oldest's
    assert reason(routes, "team-b/new") == HOST_ALREADY_CLAIMED  # with the check on


# -- wildcard ownership ------------------------------------------------------------------------------------

WILD = RouterOptions(allow_wildcard_routes=True)


def test_wildcard_route_owns_its_subdomain_for_its_namespace() -> None:
    routes = [
        mk("wild", "team-a", host="www.example.com", wildcard=True, age=1),
        mk("mine", "team-a", host="shop.example.com", age=2),
        mk("theirs", "team-b", host="blog.example.com", age=3),
        mk("elsewhere", "team-b", host="blog.example.org", age=4),
    ]
    v = verdicts(routes, WILD)
    assert v["team-a/wild"].admitted and v["team-a/wild"].host == "www.example.com"
    assert v["team-a/mine"].admitted
    assert v["team-b/theirs"].reason == HOST_ALREADY_CLAIMED
    assert "team-a" in v["team-b/theirs"].message
    assert v["team-b/elsewhere"].admitted


def test_older_host_in_another_namespace_blocks_a_wildcard() -> None:
    routes = [
        mk("plain", "team-b", host="blog.example.com", age=1),
        mk("wild", "team-a", wildcard=True, age=2),
    ]
    v = verdicts(routes, WILD)
    assert v["team-b/plain"].admitted
    assert v["team-a/wild"].reason == HOST_ALREADY_CLAIMED


def test_any_older_host_of_another_namespace_blocks_a_wildcard() -> None:
    # OpenShift's HostAdmitter checks every route under the subdomain, not only the oldest one.
    routes = [
        mk("mine", "team-a", host="shop.example.com", age=1),
        mk("theirs", "team-b", host="blog.example.com", age=2),
        mk("wild", "team-a", host="www.example.com", wildcard=True, age=3),
    ]
    v = verdicts(routes, WILD)
    assert v["team-a/mine"].admitted and v["team-b/theirs"].admitted
    assert v["team-a/wild"].reason == HOST_ALREADY_CLAIMED
    assert "team-b" in v["team-a/wild"].message


def test_two_wildcards_for_one_subdomain() -> None:
    routes = [
        mk("w1", "team-a", host="a.example.com", wildcard=True, age=1),
        mk("w2", "team-a", host="b.example.com", wildcard=True, age=2),
        mk("w3", "team-a", host="c.example.com", wildcard=True, age=3, path="/api"),
        mk("w4", "team-b", host="d.example.com", wildcard=True, age=4, path="/other"),
    ]
    v = verdicts(routes, WILD)
    assert v["team-a/w1"].admitted
    assert v["team-a/w2"].reason == HOST_ALREADY_CLAIMED  # same *.example.com, same path
    assert v["team-a/w3"].admitted  # same namespace, another path
    assert v["team-b/w4"].reason == HOST_ALREADY_CLAIMED


def test_exact_host_and_wildcard_of_one_namespace_coexist() -> None:
    routes = [
        mk("wild", host="www.example.com", wildcard=True, age=1),
        mk("exact", host="www.example.com", age=2),
    ]
    assert admitted(routes, WILD) == {"team-a/wild", "team-a/exact"}


# -- extended validation -----------------------------------------------------------------------------------


def edge(**fields: str) -> dict[str, Any]:
    return {"termination": "edge", **fields}


@pytest.mark.parametrize(
    ("tls_fields", "field"),
    [
        pytest.param(
            {"certificate": "cert", "key": "other_key"}, "spec.tls.key", id="key-does-not-match-cert"
        ),
        pytest.param(
            {"certificate": "not a pem", "key": "key"}, "spec.tls.certificate", id="certificate-not-pem"
        ),
        pytest.param(
            {"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "key": "key"},
            "spec.tls.certificate",
            id="certificate-pem-block-does-not-parse",
        ),
        pytest.param(
            {"certificate": "cert", "key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
            "spec.tls.key",
            id="key-does-not-parse",
        ),
        pytest.param({"certificate": "cert"}, "spec.tls.key", id="certificate-without-key"),
        pytest.param({"key": "key"}, "spec.tls.certificate", id="key-without-certificate"),
        pytest.param(
            {"certificate": "cert", "key": "key", "caCertificate": "other_ca"},
            "spec.tls.certificate",
            id="certificate-not-chaining-to-ca",
        ),
        pytest.param(
            {"certificate": "cert", "key": "key", "caCertificate": "garbage"},
            "spec.tls.caCertificate",
            id="ca-certificate-not-pem",
        ),
    ],
)
@pytest.mark.parametrize("termination", ["edge", "reencrypt"])
def test_extended_validation_failures(tls_fields: dict[str, str], field: str, termination: str) -> None:
    tls: dict[str, Any] = {"termination": termination, "destinationCACertificate": certs()["ca"]}
    tls.update({k: certs().get(v, v) for k, v in tls_fields.items()})
    v = verdicts([mk("web", tls=tls)])["team-a/web"]
    assert (v.admitted, v.reason) == (False, EXTENDED_VALIDATION_FAILED)
    assert field in v.message
    assert_clean(v.message)


def test_good_certificate_chain_is_admitted() -> None:
    c = certs()
    tls = edge(certificate=c["cert"], key=c["key"], caCertificate=c["ca"])
    assert verdicts([mk("web", tls=tls)])["team-a/web"].admitted


def test_expired_certificate_is_still_admitted() -> None:
    c = certs()
    tls = edge(certificate=c["expired_cert"], key=c["expired_key"], caCertificate=c["ca"])
    assert verdicts([mk("web", tls=tls)])["team-a/web"].admitted


def test_sha1_signed_ca_issued_certificate_is_refused(sha1_pair: dict[str, str]) -> None:
    tls = edge(
        certificate=sha1_pair["leaf.crt"], key=sha1_pair["leaf.key"], caCertificate=sha1_pair["ca.crt"]
    )
    v = verdicts([mk("web", tls=tls)])["team-a/web"]
    assert v.reason == EXTENDED_VALIDATION_FAILED
    assert "SHA1" in v.message
    # The leaf does chain to the CA; the only problem is the weak signature.
    assert "not signed by" not in v.message


def test_sha1_self_signed_certificate_is_exempt(sha1_pair: dict[str, str]) -> None:
    tls = edge(certificate=sha1_pair["self.crt"], key=sha1_pair["self.key"])
    assert verdicts([mk("web", tls=tls)])["team-a/web"].admitted


def test_bad_destination_ca_certificate() -> None:
    tls = {"termination": "reencrypt", "destinationCACertificate": "not a certificate"}
    v = verdicts([mk("web", tls=tls)])["team-a/web"]
    assert v.reason == EXTENDED_VALIDATION_FAILED
    assert "spec.tls.destinationCACertificate" in v.message


def test_reencrypt_without_dest_ca_and_without_service_ca_is_refused_with_a_fix() -> None:
    route = mk("web", tls={"termination": "reencrypt"})
    v = verdicts([route])["team-a/web"]
    assert v.reason == EXTENDED_VALIDATION_FAILED
    assert "spec.tls.destinationCACertificate" in v.message
    for fix in ("--dest-ca-cert", "--service-ca", "--insecure-skip-backend-verify"):
        assert fix in v.message
    assert verdicts([route], RouterOptions(has_service_ca=True))["team-a/web"].admitted
    assert verdicts([route], RouterOptions(insecure_skip_backend_verify=True))["team-a/web"].admitted
    with_ca = mk("web", tls={"termination": "reencrypt", "destinationCACertificate": certs()["ca"]})
    assert verdicts([with_ca])["team-a/web"].admitted


@pytest.mark.parametrize(
    ("annotation", "value", "ok"),
    [
        pytest.param(
            "haproxy.router.openshift.io/ip_allowlist", "10.0.0.0/8 192.168.1.7 ::1", True, id="good"
        ),
        pytest.param(
            "haproxy.router.openshift.io/ip_allowlist", "10.0.0.0/8 not-an-ip", False, id="bad-entry"
        ),
        pytest.param("haproxy.router.openshift.io/ip_allowlist", "10.0.0.0/33", False, id="bad-prefix"),
        pytest.param("haproxy.router.openshift.io/ip_allowlist", "  ", False, id="empty"),
        pytest.param(
            "haproxy.router.openshift.io/ip_whitelist", "10.1.1.1,10.1.1.2", False, id="legacy-commas"
        ),
        pytest.param("haproxy.router.openshift.io/ip_whitelist", "10.1.1.1", True, id="legacy-good"),
    ],
)
def test_ip_allowlist_annotation(annotation: str, value: str, ok: bool) -> None:
    v = verdicts([mk("web", annotations={annotation: value})])["team-a/web"]
    assert v.admitted is ok
    if not ok:
        assert v.reason == EXTENDED_VALIDATION_FAILED
        assert f"metadata.annotations[{annotation}]" in v.message


def test_every_problem_of_a_route_is_named_in_one_message() -> None:
    c = certs()
    tls = edge(certificate=c["cert"], key=c["other_key"], caCertificate=c["other_ca"])
    v = verdicts([mk("web", tls=tls, annotations={"haproxy.router.openshift.io/ip_allowlist": "x"})])[
        "team-a/web"
    ]
    for field in ("spec.tls.key", "spec.tls.certificate", "metadata.annotations"):
        assert field in v.message
    assert_clean(v.message)


# -- determinism -------------------------------------------------------------------------------------------


def _population() -> list[Route]:
    c = certs()
    routes = []
    for i in range(60):
        ns = f"team-{i % 4}"
        host = f"h{i % 7}.example.com"
        tls: dict[str, Any] | None = [None, EDGE, PASSTHROUGH, edge(certificate=c["cert"], key=c["key"])][
            i % 4
        ]
        routes.append(
            mk(
                f"r{i}",
                ns,
                host=host,
                age=i % 5,
                uid=f"u{(i * 37) % 60:03d}",
                path=["", "/a", "/b"][i % 3],
                tls=tls,
                wildcard=i % 11 == 0,
            )
        )
    return routes


def test_same_input_in_any_order_gives_the_same_verdicts() -> None:
    routes = _population()
    expected = {k: (v.admitted, v.reason, v.message, v.host) for k, v in admit(routes, WILD).items()}
    assert any(not a for a, *_ in expected.values()) and any(a for a, *_ in expected.values())
    rng = random.Random(1234)
    for _ in range(20):
        shuffled = routes[:]
        rng.shuffle(shuffled)
        got = {k: (v.admitted, v.reason, v.message, v.host) for k, v in admit(shuffled, WILD).items()}
        assert got == expected


def test_verdict_key_is_the_route_key() -> None:
    route = mk("web", "team-a")
    assert list(admit([route], OPTS)) == [ObjectKey("Route", "team-a", "web")]
