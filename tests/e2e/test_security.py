"""Keys and TLS with real processes: an edge behind API keys, a verifier behind per-edge tokens,
both on HTTPS with a self-signed certificate made here."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import MODEL_ID, Server, start_server


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tandem-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(d)
    tokens = d / "edge-tokens"
    tokens.write_text("# edges allowed in\nedge-a tok-a\nedge-b tok-b\n")
    tls = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    verifier = start_server("verifier.cli", ["--backend", "torch", "--threads", "1", "--auth-tokens-file", str(tokens),
                                             *tls],
                            d / "verifier.log", ca_bundle=str(cert))
    try:  # the verifier stops even when the edge fails to start
        edge = start_server("proxy.cli", ["--verifier-url", verifier.url, "--verifier-token", "tok-a",
                                          "--verifier-ca-bundle", str(cert), "--api-key", "app-key", "--threads",
                                          "1", "--slots", "1", "--n-ctx", "1024", *tls], d / "edge.log",
                            ca_bundle=str(cert))
        try:
            yield {"verifier": verifier, "edge": edge, "cert": str(cert)}
        finally:
            edge.stop()
    finally:
        verifier.stop()


def test_the_sdk_over_https_with_a_key_and_greedy_speculation_through_the_secured_verifier(
        secured: dict[str, object]) -> None:
    edge, cert = secured["edge"], str(secured["cert"])
    assert isinstance(edge, Server)
    http = httpx.Client(verify=ssl.create_default_context(cafile=cert))
    api = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="app-key", max_retries=0, http_client=http)
    messages = [{"role": "user", "content": "Name three colors."}]
    spec = api.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=16,  # type: ignore[arg-type]
                                       temperature=0, extra_body={"tandem": {"mode": "speculative"}})
    cloud = api.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=16,  # type: ignore[arg-type]
                                        temperature=0, extra_body={"tandem": {"mode": "cloud"}})
    assert spec.choices[0].message.content == cloud.choices[0].message.content
    assert (spec.model_extra or {})["tandem"]["rounds"] > 0

    wrong = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="not-it", max_retries=0, http_client=http)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.models.list()
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    assert http.get(f"{edge.url}/health").status_code == 200  # probes need no key
    http.close()
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
        httpx.get(edge.url.replace("https", "http") + "/health", timeout=5)


def test_the_verifier_wants_an_edge_token_on_every_route_but_health(secured: dict[str, object]) -> None:
    verifier, cert = secured["verifier"], str(secured["cert"])
    assert isinstance(verifier, Server)
    with httpx.Client(verify=ssl.create_default_context(cafile=cert), base_url=verifier.url) as http:
        assert http.get("/health").status_code == 200
        for path in ("/v1/stats", "/v1/info"):
            refused = http.get(path)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
            assert http.get(path, headers={"authorization": "Bearer tok-x"}).status_code == 401
            assert http.get(path, headers={"authorization": "Bearer tok-b"}).status_code == 200
        body = {"prompt_token_ids": [1, 2, 3], "max_tokens": 2, "stop_token_ids": []}
        assert http.post("/v1/generate", json=body).status_code == 401
    with pytest.raises(httpx.ConnectError):  # the certificate is not trusted without the bundle
        httpx.get(f"{verifier.url}/health", timeout=5)


def test_the_channel_refuses_an_edge_without_a_valid_token(secured: dict[str, object]) -> None:
    import asyncio

    from proxy.cloud.auth import client_tls
    from proxy.cloud.channel import websocket_connector
    from proxy.cloud.errors import VerifierRejected

    verifier, cert = secured["verifier"], str(secured["cert"])
    assert isinstance(verifier, Server)

    async def connect(token: str | None) -> None:
        link = await websocket_connector(verifier.url, 10, token=token, tls=client_tls(cert))()
        await link.close()

    asyncio.run(connect("tok-b"))
    for token in (None, "tok-x"):
        with pytest.raises(VerifierRejected) as info:
            asyncio.run(connect(token))
        assert info.value.code == "invalid_api_key"
