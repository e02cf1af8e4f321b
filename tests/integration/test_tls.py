"""The hub serves HTTPS when given a certificate; nodes and researchers verify it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accord.client import Client
from accord.demo import Consortium, DemoLayout, free_port, prepare
from accord.errors import NetworkError
from accord.query.scenarios import trial_recruitment
from accord.trust.keys import load_identity


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accord test hub")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "hub-cert.pem", directory / "hub-cert.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_consortium(tmp_path: Path) -> Iterator[tuple[Consortium, Path]]:
    cert, key = self_signed(tmp_path)
    port = free_port()
    root = tmp_path / "consortium"
    manifest = prepare(root, members=3, persons=300, seed=5, hub_url=f"https://127.0.0.1:{port}")
    for member in manifest.members:
        config = DemoLayout(root).node_config(member.id)
        body = json.loads(config.read_text())
        body["tls_ca"] = str(cert)
        config.write_text(json.dumps(body))
    consortium = Consortium(DemoLayout(root), "127.0.0.1", port, tls=(cert, key))
    try:
        consortium.start_hub()
        for member in manifest.members:
            consortium.start_node(member.id)
        consortium.wait_connected([m.id for m in manifest.members])
        yield consortium, cert
    finally:
        consortium.stop()


def test_count_over_https(tls_consortium: tuple[Consortium, Path]) -> None:
    consortium, cert = tls_consortium
    assert consortium.url.startswith("https://")
    identity = load_identity(consortium.layout.researcher_key)
    with Client(consortium.url, identity, tls_ca=cert) as client:
        from accord.synth import ConsortiumManifest

        manifest = ConsortiumManifest.load(consortium.layout.manifest)
        result = client.run(trial_recruitment(manifest.as_of), timeout=60)
    assert result.done
    assert all(m.status == "done" for m in result.members)


def test_plain_http_is_not_served_on_the_https_port(
    tls_consortium: tuple[Consortium, Path],
) -> None:
    consortium, _ = tls_consortium
    plain = consortium.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/v1/health", timeout=5).raise_for_status()


def test_an_untrusted_certificate_is_refused(tls_consortium: tuple[Consortium, Path]) -> None:
    consortium, _ = tls_consortium
    identity = load_identity(consortium.layout.researcher_key)
    with (
        Client(consortium.url, identity) as client,
        pytest.raises(NetworkError, match="certificate"),
    ):
        client.health()
