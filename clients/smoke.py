"""`python -m clients.smoke`: is a verifier up and verifying? (The Helm chart's test hook.)

Reads ``VERIFIER_URL``, optionally ``VERIFIER_TOKEN_FILE`` (the verifier's tokens file: its first
token is used) and ``VERIFIER_CA_BUNDLE``; checks ``GET /health`` is ok, then asks for one step of
target decoding (``POST /v1/generate``, one token) and prints what came back. Exit status 0 when
both worked.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx


def first_token(path: str) -> str:
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.split()[-1]  # 'token' or 'name token'
    raise SystemExit(f"no token in {path}")


def main() -> int:
    url = os.environ["VERIFIER_URL"].rstrip("/")
    headers = {}
    if token_file := os.environ.get("VERIFIER_TOKEN_FILE"):
        headers["authorization"] = f"Bearer {first_token(token_file)}"
    # in-cluster, the certificate may name another host: trust the CA given, else do not check
    verify: bool | str = os.environ.get("VERIFIER_CA_BUNDLE") or not url.startswith("https")
    with httpx.Client(base_url=url, headers=headers, verify=verify, timeout=120) as client:
        health = client.get("/health")
        print(f"GET /health: {health.status_code} {health.text}")
        if health.status_code != 200 or health.json().get("status") != "ok":
            return 1
        body = {"prompt_token_ids": [1], "max_tokens": 1}
        with client.stream("POST", "/v1/generate", json=body) as resp:
            lines = [line for line in resp.iter_lines() if line]
        print(f"POST /v1/generate: {resp.status_code} {lines}")
        if resp.status_code != 200 or not lines or len(json.loads(lines[0])["token_ids"]) != 1:
            return 1
    print("verifier ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
