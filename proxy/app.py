"""HTTP transport of the edge: OpenAI-compatible routes over an EdgeService."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from proxy.errors import OpenAIError, install_error_handlers
from proxy.openai_schema import ChatCompletionRequest, CompletionRequest
from proxy.service import COMPLETIONS_DEFAULT_MAX_TOKENS, EdgeService, Event, Finished, PreparedRequest, TextDelta

log = logging.getLogger(__name__)


def _usage(f: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
    }


class _Formatter:
    """Builds OpenAI objects for one response (chat or text completion)."""

    def __init__(self, kind: str, model: str) -> None:
        self.chat = kind == "chat"
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model

    def _base(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def full(self, text: str, f: Finished) -> dict[str, Any]:
        if self.chat:
            body = self._base("chat.completion")
            body["choices"] = [{"index": 0, "message": {"role": "assistant", "content": text},
                                "logprobs": None, "finish_reason": f.finish_reason}]
        else:
            body = self._base("text_completion")
            body["choices"] = [{"index": 0, "text": text, "logprobs": None, "finish_reason": f.finish_reason}]
        body["usage"] = _usage(f)
        body["tandem"] = f.stats
        return body

    def usage_chunk(self, f: Finished) -> dict[str, Any]:
        """The final chunk of a stream with include_usage: no choices, the usage."""
        body = self._base("chat.completion.chunk" if self.chat else "text_completion")
        body["choices"] = []
        body["usage"] = _usage(f)
        return body

    def chunk(self, text: str | None, finish: str | None = None, first: bool = False) -> dict[str, Any]:
        if self.chat:
            body = self._base("chat.completion.chunk")
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            body["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        else:
            body = self._base("text_completion")
            body["choices"] = [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}]
        return body


async def _primed(events: AsyncIterator[Event]) -> Event | None:
    """Run the generation up to its first event so that failures before any output
    (verifier down, bad prompt) become a proper HTTP status instead of a stream error."""
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


async def _chain(first: Event | None, rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    if first is not None:
        yield first
    async for ev in rest:
        yield ev


def create_app(
    service_factory: Callable[[], Awaitable[EdgeService]],
    close: Callable[[EdgeService], Awaitable[None]] | None = None,
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await service_factory()
        app.state.service = service
        yield
        if close is not None:
            await close(service)

    app = FastAPI(title="Tandem edge (OpenAI-compatible)", lifespan=lifespan)
    install_error_handlers(app)

    def service_of(request: Request) -> EdgeService:
        return request.app.state.service  # type: ignore[no-any-return]

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        service = service_of(request)
        try:
            reachable = await service.check_verifier()
        except OpenAIError:
            reachable = False
        return {"status": "ok", "model": service.model_id, "verifier": "ok" if reachable else "unreachable"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        service = service_of(request)
        return {"object": "list", "data": [
            {"id": service.model_id, "object": "model", "created": service.created, "owned_by": "tandem"}]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        service = service_of(request)
        service.check_model(model_id)
        return {"id": service.model_id, "object": "model", "created": service.created, "owned_by": "tandem"}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> JSONResponse | EventSourceResponse:
        return await _complete(service_of(request), req, "chat")

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> JSONResponse | EventSourceResponse:
        return await _complete(service_of(request), req, "text")

    return app


async def _complete(
    service: EdgeService, req: ChatCompletionRequest | CompletionRequest, kind: str
) -> JSONResponse | EventSourceResponse:
    service.check_model(req.model)
    await service.ensure_verifier_known(service.mode_of(req))
    if isinstance(req, ChatCompletionRequest):
        prep = service.prepare(req, service.chat_prompt(req), None)
    else:
        prep = service.prepare(req, service.text_prompt(req), COMPLETIONS_DEFAULT_MAX_TOKENS)
    return await _respond(service, prep, _Formatter(kind, service.model_id), req.stream, req.include_usage())


async def _respond(
    service: EdgeService, prep: PreparedRequest, fmt: _Formatter, stream: bool, include_usage: bool
) -> JSONResponse | EventSourceResponse:
    events = service.generate(prep)
    if not stream:
        parts: list[str] = []
        try:
            async for ev in events:
                if isinstance(ev, TextDelta):
                    parts.append(ev.text)
                else:
                    return JSONResponse(fmt.full("".join(parts), ev))
        finally:
            await events.aclose()
        raise OpenAIError(500, "generation ended without a result", "server_error")
    try:
        first = await _primed(events)
    except BaseException:
        await events.aclose()
        raise
    return EventSourceResponse(_sse(first, events, fmt, include_usage), ping=15)


async def _sse(
    first: Event | None, events: AsyncIterator[Event], fmt: _Formatter, include_usage: bool
) -> AsyncIterator[dict[str, str]]:
    def data(obj: dict[str, Any]) -> dict[str, str]:
        if include_usage:
            obj.setdefault("usage", None)
        return {"data": json.dumps(obj, separators=(",", ":"))}

    try:
        if fmt.chat:
            yield data(fmt.chunk("", first=True))
        async for ev in _chain(first, events):
            if isinstance(ev, TextDelta):
                yield data(fmt.chunk(ev.text))
            else:
                final = fmt.chunk(None, ev.finish_reason)
                final["tandem"] = ev.stats
                yield data(final)
                if include_usage:
                    yield {"data": json.dumps(fmt.usage_chunk(ev), separators=(",", ":"))}
        yield {"data": "[DONE]"}
    except OpenAIError as exc:
        log.warning("error inside a stream", extra={"error": exc.message})
        yield {"data": json.dumps(exc.envelope())}
        yield {"data": "[DONE]"}
    except Exception as exc:  # noqa: BLE001 - never drop a stream without telling the client
        log.exception("unexpected error inside a stream")
        err = OpenAIError(500, f"internal error: {type(exc).__name__}", "server_error", None, "internal_error")
        yield {"data": json.dumps(err.envelope())}
        yield {"data": "[DONE]"}
    finally:
        await events.aclose()  # client gone or done: ends the verifier session
