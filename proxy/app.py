"""HTTP transport of the edge: OpenAI-compatible routes over an EdgeService."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from proxy.errors import OpenAIError, install_error_handlers
from proxy.openai_responses import ModelCard, ModelList, ResponseBuilder, dump
from proxy.openai_schema import ChatCompletionRequest, CompletionRequest
from proxy.output import Event, TextDelta
from proxy.service import EdgeService

log = logging.getLogger(__name__)


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
        service: EdgeService = request.app.state.service
        return service

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        service = service_of(request)
        try:
            reachable = await service.verifier.check()
        except OpenAIError:
            reachable = False
        return {"status": "ok", "model": service.model_id, "verifier": "ok" if reachable else "unreachable"}

    @app.get("/v1/models")
    async def models(request: Request) -> ModelList:
        service = service_of(request)
        return ModelList(data=[ModelCard(id=service.model_id, created=service.created)])

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> ModelCard:
        service = service_of(request)
        service.check_model(model_id)
        return ModelCard(id=service.model_id, created=service.created)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> JSONResponse | EventSourceResponse:
        return await _complete(service_of(request), req, "chat")

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> JSONResponse | EventSourceResponse:
        return await _complete(service_of(request), req, "text")

    return app


async def _complete(
    service: EdgeService, req: ChatCompletionRequest | CompletionRequest, kind: Literal["chat", "text"]
) -> JSONResponse | EventSourceResponse:
    prep = await service.prepare(req)
    builder = ResponseBuilder(kind, service.model_id)
    events = service.generate(prep)
    if not req.stream:
        return await _full(events, builder)
    try:
        first = await _primed(events)
    except BaseException:
        await events.aclose()
        raise
    return EventSourceResponse(_sse(first, events, builder, req.include_usage()), ping=15)


async def _full(events: AsyncGenerator[Event, None], builder: ResponseBuilder) -> JSONResponse:
    parts: list[str] = []
    try:
        async for ev in events:
            if isinstance(ev, TextDelta):
                parts.append(ev.text)
            else:
                return JSONResponse(dump(builder.full("".join(parts), ev)))
    finally:
        await events.aclose()
    raise OpenAIError(500, "generation ended without a result", "server_error")


async def _primed(events: AsyncGenerator[Event, None]) -> Event | None:
    """Run the generation up to its first event so that failures before any output
    (verifier down, bad prompt) become a proper HTTP status instead of a stream error."""
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


async def _sse(
    first: Event | None, events: AsyncGenerator[Event, None], builder: ResponseBuilder, include_usage: bool
) -> AsyncGenerator[dict[str, str], None]:
    def data(obj: dict[str, Any]) -> dict[str, str]:
        return {"data": json.dumps(obj, separators=(",", ":"))}

    async def chained() -> AsyncGenerator[Event, None]:
        if first is not None:
            yield first
        async for ev in events:
            yield ev

    try:
        if builder.chat:
            yield data(dump(builder.chunk("", first=True), include_usage))
        async for ev in chained():
            if isinstance(ev, TextDelta):
                yield data(dump(builder.chunk(ev.text), include_usage))
            else:
                yield data(dump(builder.chunk(None, ev.finish_reason, stats=ev.stats), include_usage))
                if include_usage:
                    yield data(dump(builder.usage_chunk(ev)))
        yield {"data": "[DONE]"}
    except OpenAIError as exc:
        log.warning("error inside a stream", extra={"error": exc.message})
        yield data(exc.envelope())
        yield {"data": "[DONE]"}
    except Exception as exc:  # noqa: BLE001 - never drop a stream without telling the client
        log.exception("unexpected error inside a stream")
        err = OpenAIError(500, f"internal error: {type(exc).__name__}", "server_error", None, "internal_error")
        yield data(err.envelope())
        yield {"data": "[DONE]"}
    finally:
        await events.aclose()  # client gone or done: ends the verifier session
