"""The checks that talk to sockets: what each endpoint speaks (per termination), then a real request
through the router.

Reencrypt is checked with the very SSLContext the router builds for the route (routing/contexts.py), so
a PASS here is a handshake the router would also complete.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

from shiftroute.diagnose.checks import Check, Run, failed, passed
from shiftroute.diagnose.probes import (
    HttpResult,
    TlsResult,
    http_request,
    insecure_context,
    tls_handshake,
)
from shiftroute.errors import PKIError
from shiftroute.pki.pem import CertSummary, load_certificates, summarize
from shiftroute.routing.contexts import backend_context
from shiftroute.routing.table import Server

ROUTER_PAGE = b"Application is not available"


def cert_lines(who: str, cert: CertSummary | None) -> tuple[str, ...]:
    if cert is None:
        return (f"{who}: no certificate",)
    problem = cert.validity_problem()
    expiry = f"{cert.not_after:%Y-%m-%d %H:%M:%SZ}" + (f" ({problem})" if problem else "")
    return (
        f"{who}: subject {cert.subject or '(empty)'}",
        f"  issuer {cert.issuer or '(empty)'}; SANs {', '.join(cert.sans) or 'none'}; expires {expiry}",
    )


def _plain_http_answer(run: Run, server: Server) -> HttpResult:
    return http_request(server.address, server.port, run.host, run.route.spec.path or "/")


def _not_tls(run: Run, server: Server, probe: TlsResult) -> Check:
    """A TLS handshake failed: say whether the endpoint speaks plain HTTP instead."""
    plain = _plain_http_answer(run, server)
    if plain.ok:
        what = "a reencrypt route" if run.route.spec.termination == "reencrypt" else "a passthrough route"
        return failed(
            "backend",
            f"{server.label} speaks plain HTTP, not TLS (it answered {plain.status_line!r} to a plain "
            "request, and not a TLS handshake)",
            f"{what} needs a backend that serves TLS: enable TLS in the application (for httpd: "
            "mod_ssl, SSLEngine on) or use an edge route, which sends plain HTTP to the backend "
            f"(shiftroute create route edge {run.route.meta.name} --service ...)",
        )
    return failed(
        "backend",
        f"{server.label}: {probe.error}",
        "the endpoint must complete a TLS handshake: check that the application serves TLS on this "
        "port with a certificate and key it can load (see its log)",
    )


def check_backend(run: Run) -> Check:
    termination = run.route.spec.termination
    if termination == "reencrypt":
        return _check_reencrypt(run)
    if termination == "passthrough":
        return _check_passthrough(run)
    return _check_plain(run)


def _verifier(run: Run) -> tuple[ssl.SSLContext | None, str | None, str, str]:
    """(context, server name, what it verifies against, CA subjects) the way the router verifies."""
    tls = run.route.spec.tls
    assert tls is not None
    if tls.destination_ca_certificate:
        subjects = _subjects(tls.destination_ca_certificate)
        ctx = backend_context(tls.destination_ca_certificate, verify_hostname=False)
        return ctx, None, f"spec.tls.destinationCACertificate ({subjects})", subjects
    if run.options.service_ca_pem:
        subjects = _subjects(run.options.service_ca_pem)
        name = f"{run.route.spec.to.name}.{run.route.meta.namespace}.svc"
        ctx = backend_context(run.options.service_ca_pem, verify_hostname=True)
        return ctx, name, f"the service CA ({subjects}) with name {name}", subjects
    return None, None, "", ""


def _subjects(pem: str) -> str:
    try:
        return ", ".join(summarize(c).subject or "(empty)" for c in load_certificates(pem))
    except PKIError:
        return "(does not parse)"


def _check_reencrypt(run: Run) -> Check:
    try:
        ctx, server_name, against, subjects = _verifier(run)
    except PKIError as exc:
        return failed(
            "backend", f"the route's CA cannot be loaded: {exc}", "recreate the route with a PEM CA"
        )
    details: list[str] = []
    version = ""
    for server in run.servers:
        seen = tls_handshake(server.address, server.port, insecure_context(), server_name)
        if not seen.ok:
            return _not_tls(run, server, seen)
        details.extend(cert_lines(f"{server.label} presented", seen.cert))
        version = seen.version
        if ctx is None:
            continue
        verified = tls_handshake(server.address, server.port, ctx, server_name)
        if not verified.ok:
            return _verify_failure(run, server, seen, verified, subjects, tuple(details))
    if ctx is None:
        details.append(
            "note: the route has no destinationCACertificate, so the router verifies against its "
            "--service-ca; give the same file to diagnose with --service-ca to check the chain"
        )
        return passed("backend", f"endpoints speak TLS ({version}); chain not checked", tuple(details))
    return passed(
        "backend", f"endpoints speak TLS ({version}); certificate verifies against {against}", tuple(details)
    )


def _verify_failure(
    run: Run, server: Server, seen: TlsResult, verified: TlsResult, subjects: str, details: tuple[str, ...]
) -> Check:
    cert = seen.cert
    message = verified.verify_message or verified.error
    reason = f"{server.label}: {verified.error}"
    name = run.route.meta.name
    if cert is not None and ("expired" in message or datetime.now(UTC) > cert.not_after):
        return failed(
            "backend",
            f"{reason}: the backend's certificate ({cert.subject}) expired on "
            f"{cert.not_after:%Y-%m-%d %H:%M:%SZ}",
            "renew the backend's certificate (e.g. shiftroute pki cert NAME --ca CA) and restart the "
            "application with it; the router refuses an expired backend certificate",
            details,
        )
    if cert is not None and "not yet valid" in message:
        return failed(
            "backend",
            f"{reason}: the backend's certificate is valid only from {cert.not_before:%Y-%m-%d %H:%M:%SZ}",
            "check the clocks of this machine and of the host that issued the certificate, or reissue it",
            details,
        )
    if "hostname mismatch" in message.lower() or "ip address mismatch" in message.lower():
        return failed(
            "backend",
            reason,
            "with the service CA the router checks the name <service>.<namespace>.svc in the backend's "
            "SANs: issue the certificate with that DNS SAN, or give the route --dest-ca-cert",
            details,
        )
    issuer = cert.issuer if cert is not None else "an unknown issuer"
    option = (
        "--dest-ca-cert"
        if run.route.spec.tls and run.route.spec.tls.destination_ca_certificate
        else "--service-ca"
    )
    return failed(
        "backend",
        reason,
        f"the backend's certificate is issued by {issuer}; {option} holds {subjects}: create the route with "
        f"the CA that signed the backend certificate (shiftroute delete route {name}, then shiftroute create "
        f"route reencrypt {name} ... --dest-ca-cert CA.crt)",
        details,
    )


def _names_host(cert: CertSummary | None, host: str) -> bool:
    if cert is None:
        return False
    for san in cert.sans:
        name = san.removeprefix("DNS:").lower()
        if name == host or (name.startswith("*.") and host.partition(".")[2] == name[2:]):
            return True
    return False


def _check_passthrough(run: Run) -> Check:
    details: list[str] = []
    version = ""
    for server in run.servers:
        seen = tls_handshake(server.address, server.port, insecure_context(), run.host)
        if not seen.ok:
            return _not_tls(run, server, seen)
        version = seen.version
        details.extend(cert_lines(f"{server.label} presented (for SNI {run.host})", seen.cert))
        if not _names_host(seen.cert, run.host):
            details.append(
                f"note: this certificate does not name {run.host} in its SANs: clients that verify "
                "(curl without -k, browsers) will refuse it; passthrough clients see it unchanged"
            )
    return passed("backend", f"endpoints speak TLS ({version}) for SNI {run.host}", tuple(details))


def _check_plain(run: Run) -> Check:
    kind = "an edge route" if run.route.spec.termination == "edge" else "a plain-HTTP route"
    status_lines = []
    for server in run.servers:
        plain = _plain_http_answer(run, server)
        if plain.ok and plain.status != 400:
            status_lines.append(f"{server.label} answered {plain.status_line!r}")
            continue
        # No answer, or a 400 (what httpd's mod_ssl says to plain HTTP on its TLS port): try TLS.
        seen = tls_handshake(server.address, server.port, insecure_context(), run.host)
        if seen.ok:
            return failed(
                "backend",
                f"{server.label} speaks TLS ({seen.version}), but {kind} sends it plain HTTP",
                "use a reencrypt route with the CA that signed the backend's certificate (shiftroute create "
                f"route reencrypt {run.route.meta.name} --service ... --dest-ca-cert CA.crt), or a "
                "passthrough route, or serve plain HTTP on this port",
                cert_lines(f"{server.label} presented", seen.cert),
            )
        if not plain.ok:
            return failed(
                "backend",
                f"{server.label} answers neither HTTP nor TLS: {plain.error}",
                "check that the application on this port speaks HTTP/1.1 (see its log)",
            )
        status_lines.append(f"{server.label} answered {plain.status_line!r}")
    return passed("backend", f"endpoints speak plain HTTP: {'; '.join(status_lines)}")


# -- through the router -----------------------------------------------------------------------------------


def _router_target(run: Run) -> tuple[str, int, bool] | None:
    """(address, port, tls) of the listener to send the request to."""
    url = run.options.router
    if url is not None:
        return url.host, url.port, url.scheme == "https"
    router = run.router
    if router is None:
        return None
    tls = bool(run.route.spec.tls)
    address = router.https if tls else router.http
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return None
    return host.strip("[]"), int(port), tls


def check_request(run: Run) -> Check:
    target = _router_target(run)
    if target is None:
        return failed("request", "the router registered no listener address", "restart the router")
    address, port, use_tls = target
    path = run.route.spec.path or "/"
    sni = run.host if run.options.sni else None
    scheme = "https" if use_tls else "http"
    via = f"{scheme}://{run.host}{path} via {address}:{port}" + ("" if sni or not use_tls else " without SNI")
    answer = http_request(address, port, run.host, path, insecure_context() if use_tls else None, sni)
    details = cert_lines("the router served", answer.cert) if use_tls and answer.cert else ()
    if run.route.spec.termination == "passthrough" and run.options.sni:
        details += (
            "note: passthrough routes are matched by SNI only: a client without SNI (e.g. one connecting "
            "to an IP address) gets the router's default certificate and a 503",
        )
    if not answer.ok:
        return failed("request", f"{via}: {answer.error}", "see the router's log", details)
    if answer.status == 503 and ROUTER_PAGE in answer.body:
        return failed(
            "request",
            f"{via}: the router answered 503 Application is not available",
            _fix_503(run, use_tls, port),
            details,
        )
    return passed("request", f"{via}: {answer.status_line}", details)


def _fix_503(run: Run, use_tls: bool, port: int) -> str:
    tls = run.route.spec.tls
    if tls is not None and tls.termination == "passthrough" and use_tls and not run.options.sni:
        return (
            "passthrough routes are matched by SNI only: the router ended TLS itself with its default "
            "certificate and found no route. Connect by host name so the client sends SNI (curl --resolve "
            f"{run.host}:{port}:127.0.0.1 https://{run.host}:{port}/); a client that cannot send SNI needs "
            "an "
            "edge or reencrypt route"
        )
    if tls is not None and not use_tls and tls.insecure_policy != "Allow":
        return (
            f"the route's insecure policy is {tls.insecure_policy}: it is not served on the HTTP listener; "
            "use the https:// listener, or set --insecure-policy Allow (or Redirect)"
        )
    if tls is None and use_tls:
        return "a plain-HTTP route is served on the HTTP listener: use --router http://HOST:PORT"
    return (
        f"every link checked from here works, so read the router's log: a line like "
        f"`{run.route.spec.termination or 'http'} {run.label} endpoint ...` names the failure; the router "
        "may also run with another store or --service-ca than this diagnosis"
    )
