"""Framework-free ASGI middleware both servers wrap their apps in: bearer-key authentication
and a request body size limit. Refusals are answered in the OpenAI error envelope
(``verifier.core.errors``); a refused WebSocket handshake gets HTTP 403 from the server."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from verifier.core.errors import error_envelope

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class KeyRing:
    """The keys a server accepts, each with a name (who holds it: an edge, an app)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = keys  # key -> name

    @classmethod
    def load(cls, keys: Iterable[str] = (), key_file: str | None = None) -> KeyRing:
        """Keys given directly (named key-1, key-2, ...) plus a file of one key per line,
        ``name key`` or just ``key``; blank lines and ``#`` comments are skipped."""
        named: dict[str, str] = {}
        for i, key in enumerate(k for k in keys if k):
            named[key] = f"key-{i + 1}"
        if key_file:
            for n, line in enumerate(Path(key_file).read_text().splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                if len(parts) > 2:
                    raise ValueError(f"{key_file}:{n}: expected 'key' or 'name key'")
                named[parts[-1]] = parts[0] if len(parts) == 2 else f"{Path(key_file).name}:{n}"
        return cls(named)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def holder(self, authorization: str | None) -> str | None:
        """The name of the key in an ``Authorization: Bearer <key>`` header, or None."""
        if not authorization or not authorization[:7].lower() == "bearer ":
            return None
        given = authorization[7:].strip().encode()
        found = None
        for key, name in self._keys.items():  # compare with every key, in constant time each
            if hmac.compare_digest(given, key.encode()):
                found = name
        return found


async def send_error(send: Send, status: int, message: str, type_: str, code: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(error_envelope(message, type_, None, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class BearerAuth:
    """Requests under ``protected`` path prefixes need a key of the ring (401 otherwise); the
    holder's name is put in ``scope["state"]["key_holder"]``. Off when the ring is empty."""

    def __init__(self, app: ASGIApp, ring: KeyRing, protected: tuple[str, ...] = ("/v1/",)) -> None:
        self.app = app
        self.ring = ring
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.ring.enabled \
                or not str(scope.get("path", "")).startswith(self.protected):
            await self.app(scope, receive, send)
            return
        holder = self.ring.holder(_header(scope, b"authorization"))
        if holder is None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "invalid_api_key"})
                return
            await send_error(send, 401, "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
                             "invalid_request_error", "invalid_api_key", [(b"www-authenticate", b"Bearer")])
            return
        scope.setdefault("state", {})["key_holder"] = holder
        await self.app(scope, receive, send)


class BodyLimit:
    """A request body over ``max_bytes`` is answered 413, at once when its Content-Length says
    so, else as soon as the streamed bytes pass the limit (the bodies are JSON documents read
    whole anyway: they are read here and handed on)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = bytes(message.get("body", b""))
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        await send_error(send, 413, f"Request body too large: this server accepts at most {self.max_bytes} bytes.",
                         "invalid_request_error", "request_too_large", [(b"connection", b"close")])
