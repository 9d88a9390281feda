"""How the edge connects to its verifier, over the HTTP client and the channel alike: TLS and the bearer token."""

from __future__ import annotations

import ssl


def client_tls(ca_bundle: str | None) -> ssl.SSLContext:
    """The TLS context for an https:// verifier: the system's CAs, or only those in ``ca_bundle``."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


def auth_headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}
