"""`shiftroute pki`: files checked with the real openssl CLI, never only with our own reader."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import require_binary

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def openssl() -> Callable[..., str]:
    binary = require_binary("openssl")

    def run(*args: str, cwd: Path) -> str:
        proc = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run


def ok(cli: Run, *args: str) -> str:
    return cli(*args, check=True).stdout


def error_line(cli: Run, *args: str) -> str:
    proc = cli(*args)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


KEY_TEXT = {
    "ecdsa-p256": ("id-ecPublicKey", "prime256v1"),
    "rsa-2048": ("rsaEncryption", "(2048 bit)"),
    "rsa-4096": ("rsaEncryption", "(4096 bit)"),
}


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-2048", "rsa-4096"])
def test_ca_and_cert_verify_with_openssl(
    cli: Run, tmp_path: Path, openssl: Callable[..., str], key_type: str
) -> None:
    assert ok(cli, "pki", "ca", "RootCA", "--cn", "Demo Root CA", "--key-type", key_type) == (
        "wrote RootCA.crt and RootCA.key\n"
    )
    ok(
        cli,
        "pki",
        "cert",
        "www",
        "--ca",
        "RootCA",
        "--san",
        "DNS:www.example.com,DNS:api.example.com,IP:127.0.0.1",
        "--key-type",
        key_type,
    )
    assert openssl("verify", "-CAfile", "RootCA.crt", "www.crt", cwd=tmp_path).strip() == "www.crt: OK"

    ca_text = openssl("x509", "-in", "RootCA.crt", "-noout", "-text", cwd=tmp_path)
    assert "CA:TRUE" in ca_text
    assert "Certificate Sign" in ca_text  # keyCertSign
    assert "Subject: CN = Demo Root CA" in ca_text
    for fragment in KEY_TEXT[key_type]:
        assert fragment in ca_text

    leaf_text = openssl("x509", "-in", "www.crt", "-noout", "-text", cwd=tmp_path)
    assert "DNS:www.example.com, DNS:api.example.com, IP Address:127.0.0.1" in leaf_text
    assert "CA:FALSE" in leaf_text
    assert "TLS Web Server Authentication" in leaf_text
    assert "Issuer: CN = Demo Root CA" in leaf_text
    for fragment in KEY_TEXT[key_type]:
        assert fragment in leaf_text

    # The key belongs to the certificate, and keys are private to their owner.
    for name in ("www", "RootCA"):
        from_key = openssl("pkey", "-in", f"{name}.key", "-pubout", cwd=tmp_path)
        from_cert = openssl("x509", "-in", f"{name}.crt", "-pubkey", "-noout", cwd=tmp_path)
        assert from_key == from_cert
        assert stat.S_IMODE((tmp_path / f"{name}.key").stat().st_mode) == 0o600


def test_cert_without_san_uses_the_common_name(cli: Run, tmp_path: Path, openssl: Callable[..., str]) -> None:
    ok(cli, "pki", "ca", "ca")
    ok(cli, "pki", "cert", "api", "--ca", "ca", "--cn", "api.example.com", "--days", "10")
    text = openssl("x509", "-in", "api.crt", "-noout", "-text", cwd=tmp_path)
    assert "DNS:api.example.com" in text
    end = openssl("x509", "-in", "api.crt", "-noout", "-enddate", cwd=tmp_path).strip().split("=", 1)[1]
    not_after = datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    assert 9 <= (not_after - datetime.now(UTC)).days <= 10


def test_inspect_matches_openssl(cli: Run, tmp_path: Path, openssl: Callable[..., str]) -> None:
    ok(cli, "pki", "ca", "ca", "--cn", "Inspect CA", "--key-type", "rsa-2048")
    ok(cli, "pki", "cert", "www", "--ca", "ca", "--san", "DNS:www.example.com,IP:::1")
    out = ok(cli, "pki", "inspect", "www.crt")
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["Subject"] == "CN=www"
    assert fields["Issuer"] == "CN=Inspect CA"
    assert fields["SANs"] == "DNS:www.example.com, IP:::1"
    assert fields["Key"] == "ECDSA secp256r1"
    assert fields["CA"] == "no"
    fingerprint = openssl("x509", "-in", "www.crt", "-noout", "-fingerprint", "-sha256", cwd=tmp_path)
    assert fields["SHA-256"] == fingerprint.strip().split("=", 1)[1]
    serial = openssl("x509", "-in", "www.crt", "-noout", "-serial", cwd=tmp_path).strip().split("=", 1)[1]
    assert int(fields["Serial"], 16) == int(serial, 16)
    # A bundle shows every certificate.
    (tmp_path / "chain.pem").write_text(
        (tmp_path / "www.crt").read_text() + (tmp_path / "ca.crt").read_text()
    )
    chain = ok(cli, "pki", "inspect", "chain.pem")
    assert "# certificate 1 of 2" in chain and "# certificate 2 of 2" in chain
    assert "CA:           yes" in chain
    assert "Key:          RSA 2048" in chain


def test_pki_mistakes(cli: Run, tmp_path: Path) -> None:
    ok(cli, "pki", "ca", "ca")
    ok(cli, "pki", "cert", "leaf", "--ca", "ca")
    before = (tmp_path / "ca.key").read_text()
    assert "ca.crt already exists (use --force" in error_line(cli, "pki", "ca", "ca")
    assert (tmp_path / "ca.key").read_text() == before
    ok(cli, "pki", "ca", "ca", "--force")
    assert (tmp_path / "ca.key").read_text() != before
    assert "not a CA certificate" in error_line(cli, "pki", "cert", "x", "--ca", "leaf")
    # A CA certificate with another key next to it.
    (tmp_path / "mixed.crt").write_text((tmp_path / "ca.crt").read_text())
    (tmp_path / "mixed.key").write_text((tmp_path / "leaf.key").read_text())
    assert "mixed.key: does not match the public key of mixed.crt" in error_line(
        cli, "pki", "cert", "x", "--ca", "mixed"
    )
    assert "missing.crt: No such file or directory" in error_line(cli, "pki", "cert", "x", "--ca", "missing")
    assert "--san URI:x" in error_line(cli, "pki", "cert", "x", "--ca", "ca", "--san", "URI:x")
    assert "--san IP:nope: not an IP address" in error_line(
        cli, "pki", "cert", "x", "--ca", "ca", "--san", "IP:nope"
    )
    (tmp_path / "notes.txt").write_text("hello\n")
    assert "not a PEM certificate" in error_line(cli, "pki", "inspect", "notes.txt")
    assert not (tmp_path / "x.key").exists()


def test_output_directory(cli: Run, tmp_path: Path) -> None:
    ok(cli, "pki", "ca", "ca", "--dir", "out/certs")
    assert sorted(p.name for p in (tmp_path / "out" / "certs").iterdir()) == ["ca.crt", "ca.key"]
    assert stat.S_IMODE((tmp_path / "out" / "certs" / "ca.key").stat().st_mode) == 0o600
