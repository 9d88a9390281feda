"""`python -m clients.smoke`: is a verifier up and verifying? (The Helm chart's test hook.)

Reads ``VERIFIER_URL``, optionally ``VERIFIER_TOKEN_FILE`` (the verifier's tokens file: its first
token is used) and ``VERIFIER_CA_BUNDLE``; checks ``GET /health`` is ok, then verifies one round
over the protocol-v2 channel, as an edge does (a session, one draft token, its answer), and prints
what came back. Exit status 0 when both worked.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path

import httpx

from clients.load.rounds import stop_and_wait_round
from proxy.cloud.channel import VerifierChannel, websocket_connector
from proxy.decoding.speculation import SpeculationState
from verifier.core.codec import DraftToken
from verifier.core.protocol import Generation


def first_token(path: str) -> str:
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.split()[-1]  # 'token' or 'name token'
    raise SystemExit(f"no token in {path}")


async def one_round(url: str, token: str | None, verify: bool | str) -> str:
    """A session over a two-token prompt, one round with one draft token: what the verifier answered."""
    tls = None
    if url.startswith("https"):
        tls = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else ssl.create_default_context()
        if verify is False:
            tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    channel = VerifierChannel(websocket_connector(url, 60.0, token=token, tls=tls))
    try:
        session = await channel.open(Generation(prompt_token_ids=[1, 2]))
        applied = await stop_and_wait_round(session, SpeculationState.start([1, 2]), [DraftToken(3, None)])
        session.close()
        return f"round verified: {applied.accepted} of 1 draft token accepted, then token {applied.verified[-1]}"
    finally:
        await channel.aclose()


def main() -> int:
    url = os.environ["VERIFIER_URL"].rstrip("/")
    headers = {}
    token = None
    if token_file := os.environ.get("VERIFIER_TOKEN_FILE"):
        token = first_token(token_file)
        headers["authorization"] = f"Bearer {token}"
    # in-cluster, the certificate may name another host: trust the CA given, else do not check
    verify: bool | str = os.environ.get("VERIFIER_CA_BUNDLE") or not url.startswith("https")
    with httpx.Client(base_url=url, headers=headers, verify=verify, timeout=120) as client:
        health = client.get("/health")
        print(f"GET /health: {health.status_code} {health.text}")
        if health.status_code != 200 or health.json().get("status") != "ok":
            return 1
    try:
        print(asyncio.run(one_round(url, token, verify)))
    except Exception as exc:  # noqa: BLE001 - the check's verdict
        print(f"verify round failed: {type(exc).__name__}: {exc}")
        return 1
    print("verifier ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
