"""ClientHello parsing alone: `parse_client_hello` on real hellos, in µs per hello, for the compiled build
and for the Python sources (SHIFTROUTE_PURE_PYTHON=1), each in its own child process, rounds alternated.

The hellos are the first flight of a real Python/OpenSSL client (ssl.MemoryBIO, no socket): with SNI,
without, with ALPN, and TLS 1.2 only; plus a large browser-like hello (~1.8 KB: GREASE, 17 extensions,
a post-quantum key share) built by hand, whole and cut into 512-byte records. Each is parsed from a
bytearray, as the listener hands its buffer over (`--bytes` to parse bytes instead).

    python -m bench.hello_parse                 # both builds, every hello
    python -m bench.hello_parse --only compiled --rounds 9
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

BUILDS = {"compiled": {}, "pure": {"SHIFTROUTE_PURE_PYTHON": "1"}}


def python_hello(server_hostname: str | None, alpn: list[str] | None = None, tls12: bool = False) -> bytes:
    """The first flight of a Python/OpenSSL client, captured through memory BIOs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if server_hostname is None:
        ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()  # sends the ClientHello, then wants the server's answer
    return outgoing.read()


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def _ext(ext_type: int, data: bytes) -> bytes:
    return _u16(ext_type) + _u16(len(data)) + data


def browser_hello(record_size: int = 1 << 14) -> bytes:
    """A Chrome-shaped ClientHello: GREASE suites and extensions, 17 extensions, an X25519MLKEM768 share."""
    suites = [0x3A3A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8]
    suites += [0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
    host = b"www.example-shop.com"
    alpn = b"".join(bytes([len(p)]) + p for p in (b"h2", b"http/1.1"))
    shares = _u16(0x4A4A) + _u16(1) + b"\x00" + _u16(0x11EC) + _u16(1216) + bytes(1216)
    shares += _u16(0x001D) + _u16(32) + bytes(range(32))
    extensions = [
        _ext(0x2A2A, b""),
        _ext(0, _u16(len(host) + 3) + b"\x00" + _u16(len(host)) + host),
        _ext(23, b""),
        _ext(65281, b"\x00"),
        _ext(10, _u16(10) + b"\x4a\x4a\x11\xec\x00\x1d\x00\x17\x00\x18"),
        _ext(11, b"\x01\x00"),
        _ext(35, b""),
        _ext(16, _u16(len(alpn)) + alpn),
        _ext(5, b"\x01\x00\x00\x00\x00"),
        _ext(13, _u16(16) + b"\x04\x03\x08\x04\x04\x01\x05\x03\x08\x05\x05\x01\x08\x06\x06\x01"),
        _ext(18, b""),
        _ext(51, _u16(len(shares)) + shares),
        _ext(45, b"\x01\x01"),
        _ext(43, b"\x06\x6a\x6a\x03\x04\x03\x03"),
        _ext(27, b"\x02\x00\x02"),
        _ext(17513, b"\x00\x03\x02h2"),
        _ext(0xFE0D, bytes(250)),
        _ext(0x1A1A, b"\x00"),
    ]
    block = b"".join(extensions)
    body = b"\x03\x03" + bytes(range(32)) + b"\x20" + bytes(32)
    body += _u16(2 * len(suites)) + b"".join(_u16(s) for s in suites) + b"\x01\x00"
    body += _u16(len(block)) + block
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    out = b""
    for start in range(0, len(message), record_size):
        chunk = message[start : start + record_size]
        out += b"\x16\x03\x01" + _u16(len(chunk)) + chunk
    return out


HELLOS: dict[str, Callable[[], bytes]] = {
    "python-sni": lambda: python_hello("example.com"),
    "python-no-sni": lambda: python_hello(None),
    "python-sni-alpn": lambda: python_hello("app.example.com", ["h2", "http/1.1"]),
    "python-tls12-sni": lambda: python_hello("old.example.com", tls12=True),
    "browser-large": browser_hello,
    "browser-large-512-records": lambda: browser_hello(512),
}


def _child(hellos: list[str], parses: int, as_bytes: bool) -> None:
    """Time the parses of each hello once; print {hello: µs per parse} as JSON, and which build ran."""
    from shiftroute.protocol import tls_hello

    parse = tls_hello.parse_client_hello
    out: dict[str, object] = {"file": tls_hello.__file__}
    for name in hellos:
        raw = HELLOS[name]()
        data = raw if as_bytes else bytearray(raw)
        hello = parse(data)
        assert hello is not None and hello.record_length == len(raw), name
        loop = range(parses)
        start = time.perf_counter()
        for _ in loop:
            parse(data)
        out[name] = (time.perf_counter() - start) / parses * 1e6
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hello_parse", description=__doc__.split("\n\n")[0])
    parser.add_argument("hellos", nargs="*", metavar="HELLO", help=f"{', '.join(HELLOS)} (default all)")
    parser.add_argument(
        "--parses", type=int, default=20000, help="parses per hello per round (default 20000)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported (default 5)")
    parser.add_argument("--only", choices=list(BUILDS), help="one build instead of both")
    parser.add_argument("--bytes", action="store_true", help="parse bytes instead of a bytearray")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = set(args.hellos) - set(HELLOS)
    if unknown:
        parser.error(f"unknown hello(s) {', '.join(sorted(unknown))}; known: {', '.join(HELLOS)}")
    hellos = args.hellos or list(HELLOS)
    if args.child:
        _child(hellos, args.parses, args.bytes)
        return
    builds = [args.only] if args.only else list(BUILDS)
    command = [sys.executable, "-m", "bench.hello_parse", "--child", "--parses", str(args.parses), *hellos]
    if args.bytes:
        command.append("--bytes")
    results: dict[str, list[dict[str, float]]] = {build: [] for build in builds}
    files: dict[str, str] = {}
    for _ in range(args.rounds):
        for build in builds:  # alternated, so that load from other work hits both alike
            env = {k: v for k, v in os.environ.items() if k != "SHIFTROUTE_PURE_PYTHON"} | BUILDS[build]
            line = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            row = json.loads(line)
            files[build] = row.pop("file")
            results[build].append(row)
    kind = "bytes" if args.bytes else "bytearray"
    print(f"µs per hello, median of {args.rounds} rounds x {args.parses} parses (from a {kind})")
    for build in builds:
        print(f"  {build}: {files[build]}")
    width = max(len(name) for name in hellos)
    size = {name: len(HELLOS[name]()) for name in hellos}
    print(f"{'hello':<{width}}  bytes  " + "  ".join(f"{b:>9}" for b in builds))
    for name in hellos:
        cells = [statistics.median(r[name] for r in results[b]) for b in builds]
        print(f"{name:<{width}}  {size[name]:5d}  " + "  ".join(f"{c:9.2f}" for c in cells))


if __name__ == "__main__":
    main()
