"""HTTP transport of the edge: OpenAI-compatible routes over an EdgeService."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Literal
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sse_starlette.sse import EventSourceResponse

from proxy.openai.errors import OpenAIError, install_error_handlers
from proxy.openai.output import Event, Finished, TextDelta, TokenEntry
from proxy.openai.responses import ChoiceResult, LogprobsView, ModelCard, ModelList, ResponseBuilder, dump
from proxy.openai.schema import ChatCompletionRequest, CompletionRequest
from proxy.openai.tools import ToolCallStream, ToolPlan, joined_calls, tool_finish_reason
from proxy.service import EdgeService
from verifier.core.asgi import BearerAuth, BodyLimit, KeyRing

log = logging.getLogger(__name__)

HEALTH_MAX_AGE_S = 2.0  # /health asks the verifier at most this often
DEGRADED_HEADER = "x-tandem-degraded"  # set when the draft model answered alone (unverified output)
IGNORED_HEADER = "x-tandem-ignored-fields"  # unknown request fields the edge accepted without effect


def create_app(
    service_factory: Callable[[], Awaitable[EdgeService]],
    close: Callable[[EdgeService], Awaitable[None]] | None = None,
    max_body_bytes: int = 4 << 20,
    keys: KeyRing | None = None,
    cors_origins: tuple[str, ...] = (),
) -> FastAPI:
    """The edge's app. ``keys``: API keys the /v1 routes require (none: open); ``cors_origins``:
    browser origins allowed to call it (none: CORS off)."""
    app = FastAPI(title="Tandem edge (OpenAI-compatible)", lifespan=_lifespan(service_factory, close))
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(BearerAuth, ring=keys or KeyRing({}))  # outermost: nobody unknown gets further
    _add_probe_routes(app)
    _add_openai_routes(app)
    return app


def _lifespan(
    service_factory: Callable[[], Awaitable[EdgeService]], close: Callable[[EdgeService], Awaitable[None]] | None
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: the service made at start-up (held on ``app.state``), closed at shutdown."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await service_factory()
        app.state.service = service
        yield
        if close is not None:
            await close(service)

    return lifespan


def _service_of(request: Request) -> EdgeService:
    service: EdgeService = request.app.state.service
    return service


def _add_probe_routes(app: FastAPI) -> None:
    """The open routes that tell how the edge is: metrics, liveness, readiness and health."""
    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus exposition (open, like /health)."""
        return Response(generate_latest(_service_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        """The process serves HTTP (restart it if not)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Whether the edge can answer requests now; never calls the verifier. With the verifier's
        circuit open it still can, unless its cloud-loss policy is 'fail' or it has no model to
        answer alone."""
        service = _service_of(request)
        state = service.breaker.state(time.monotonic())
        ready = state != "open" or (service.settings.on_cloud_loss != "fail" and service.drafters.standalone)
        return JSONResponse({"status": "ready" if ready else "not_ready", "verifier_circuit": state},
                            status_code=200 if ready else 503)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Liveness plus what the edge knows of its verifier (asked at most every few seconds);
        ``degraded`` while the verifier's circuit is open."""
        service = _service_of(request)
        reachable = await service.verifier.reachable(max_age_s=HEALTH_MAX_AGE_S)
        state = service.breaker.state(time.monotonic())
        return {"status": "ok" if state == "closed" else "degraded", "model": service.model_id,
                "verifier": "ok" if reachable else "unreachable", "verifier_circuit": state,
                "on_cloud_loss": service.settings.on_cloud_loss}


def _add_openai_routes(app: FastAPI) -> None:
    """The OpenAI-compatible /v1 routes."""
    @app.get("/v1/models")
    async def models(request: Request) -> ModelList:
        service = _service_of(request)
        return ModelList(data=[ModelCard(id=service.model_id, created=service.created)])

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> ModelCard:
        service = _service_of(request)
        service.intake.check_model(model_id)
        return ModelCard(id=service.model_id, created=service.created)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> JSONResponse | EventSourceResponse:
        return await _complete(_service_of(request), req, "chat")

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> JSONResponse | EventSourceResponse:
        return await _complete(_service_of(request), req, "text")


async def _complete(
    service: EdgeService, req: ChatCompletionRequest | CompletionRequest, kind: Literal["chat", "text"]
) -> JSONResponse | EventSourceResponse:
    prep = await service.intake.prepare(req)
    view = LogprobsView(service.tokenizer.piece) if prep.show_logprobs else None
    echo = req.prompt_text() if isinstance(req, CompletionRequest) and req.echo else ""
    top = prep.gen.generation.logprobs or 0
    echo_entries = await service.prompt_entries(prep, top) if echo and prep.show_logprobs else []
    builder = ResponseBuilder(kind, service.model_id, view, echo, echo_entries)
    events = service.generate(prep)
    ignored = req.ignored_fields()
    # percent-encoded: a header holds latin-1 only, and a field name may hold anything
    headers = {IGNORED_HEADER: ",".join(quote(name, safe="[]._-") for name in ignored)} if ignored else {}
    if not req.stream:
        return await _full(events, builder, headers, prep.n, prep.tools)
    try:
        first = await _primed(events)
    except BaseException:
        await events.aclose()
        raise
    # a stream degraded from its start (the verifier known down) says so in its headers too
    if isinstance(first, TextDelta) and first.degraded:
        headers[DEGRADED_HEADER] = "true"
    return EventSourceResponse(_sse(first, events, builder, req.include_usage(), prep.n, prep.tools), ping=15,
                               headers=headers)


async def _full(
    events: AsyncGenerator[Event, None], builder: ResponseBuilder, headers: dict[str, str], n: int, tools: ToolPlan
) -> JSONResponse:
    parts: list[list[str]] = [[] for _ in range(n)]
    entries: list[list[TokenEntry]] = [[] for _ in range(n)]
    finished: dict[int, Finished] = {}
    try:
        async for ev in events:
            if isinstance(ev, TextDelta):
                parts[ev.index].append(ev.text)
                entries[ev.index].extend(ev.logprobs)
            else:
                finished[ev.index] = ev
    finally:
        await events.aclose()
    if len(finished) != n:
        raise OpenAIError(500, "generation ended without a result", "server_error")
    if any(f.degraded for f in finished.values()):
        headers = {**headers, DEGRADED_HEADER: "true"}
    choices = [_choice("".join(parts[i]), finished[i], entries[i], tools) for i in range(n)]
    return JSONResponse(dump(builder.full(choices)), headers=headers)


def _choice(text: str, finished: Finished, entries: list[TokenEntry], tools: ToolPlan) -> ChoiceResult:
    """A whole choice; its output turned into tool calls where the request's tool plan says so."""
    if tools.mode == "none":
        return ChoiceResult(text, finished, entries)
    calls = ToolCallStream(tools)
    content, deltas = calls.push(text)
    tail, more = calls.finish()
    content += tail
    made = joined_calls(deltas + more)
    return ChoiceResult(content or (None if made else ""), finished, entries, made or None)


async def _primed(events: AsyncGenerator[Event, None]) -> Event | None:
    """Run the generation up to its first event so that failures before any output
    (verifier down, bad prompt) become a proper HTTP status instead of a stream error."""
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


async def _sse(
    first: Event | None, events: AsyncGenerator[Event, None], builder: ResponseBuilder, include_usage: bool, n: int,
    tools: ToolPlan,
) -> AsyncGenerator[dict[str, str], None]:
    def data(obj: dict[str, Any]) -> dict[str, str]:
        return {"data": json.dumps(obj, separators=(",", ":"))}

    async def chained() -> AsyncGenerator[Event, None]:
        if first is not None:
            yield first
        async for ev in events:
            yield ev

    try:
        if builder.chat or builder.echo:
            for index in range(n):
                yield data(dump(builder.chunk("", first=True, index=index), include_usage))
        finished: list[Finished] = []
        calls = [ToolCallStream(tools) for _ in range(n)]
        async for ev in chained():
            if isinstance(ev, TextDelta):
                content, deltas = calls[ev.index].push(ev.text)
                if content or deltas or ev.logprobs:
                    yield data(dump(builder.chunk(content or None if deltas else content, degraded=ev.degraded,
                                                  entries=ev.logprobs, index=ev.index, calls=deltas), include_usage))
            else:
                content, deltas = calls[ev.index].finish()
                if content or deltas:
                    yield data(dump(builder.chunk(content or None, index=ev.index, calls=deltas), include_usage))
                reason = tool_finish_reason(calls[ev.index].called, ev.finish_reason)
                yield data(dump(builder.chunk(None, reason, stats=ev.stats, index=ev.index,
                                              token_ids=ev.token_ids), include_usage))
                finished.append(ev)
        if include_usage and finished:
            yield data(dump(builder.usage_chunk(finished)))
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
