"""HTTP transport of the verifier: thin FastAPI routes over a VerifierEngine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from verifier.backends.base import TargetBackend
from verifier.channel import ChannelConnection, EdgeQuota
from verifier.core.asgi import BearerAuth, BodyLimit, KeyRing
from verifier.core.errors import error_envelope, error_type
from verifier.core.grammar import GrammarCompiler
from verifier.core.protocol import (
    API_PREFIX,
    CHANNEL_PATH,
    GenerateRequest,
    PromptLogprobs,
    PromptLogprobsRequest,
    ServerInfo,
)
from verifier.core.wire import PROTOCOL_VERSION, SUBPROTOCOL, ChannelError, encode
from verifier.engine import EngineError, SchedulingConfig, VerifierEngine
from verifier.metrics import VerifierMetrics

log = logging.getLogger(__name__)


def _error(status: int, message: str, code: str | None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_envelope(message, error_type(status), None, code))


class VerifierService:
    """Holds the engine once the backend is loaded; routes read it from app.state."""

    def __init__(self, backend_factory: Callable[[], TargetBackend], session_ttl_s: float, max_sessions: int,
                 scheduling: SchedulingConfig, grammars: GrammarCompiler | None = None) -> None:
        self._factory = backend_factory
        self._grammars = grammars
        self._ttl = session_ttl_s
        self._max_sessions = max_sessions
        self._scheduling = scheduling
        self.engine: VerifierEngine | None = None
        self.load_error: str | None = None
        self.metrics = VerifierMetrics(lambda: self.engine)

    async def load(self) -> None:
        try:
            backend = await asyncio.to_thread(self._factory)
        except Exception as exc:  # reported through /health, never crashes the server
            log.exception("backend failed to load")
            self.load_error = f"{type(exc).__name__}: {exc}"
            return
        engine = VerifierEngine(backend, self._ttl, self._max_sessions, self._scheduling, grammars=self._grammars)
        if self._scheduling.calibration_passes:
            passes = await asyncio.to_thread(engine.calibrate)
            log.info("estimator calibrated", extra={"passes": passes, "coefficients": engine.scheduler.estimator.coef
                                                    .round(5).tolist()})
        engine.on_round = self.metrics.on_round
        engine.on_prefill = self.metrics.prefill.observe
        engine.scheduler.on_batch = self.metrics.on_batch
        self.metrics.loaded(backend.info)
        self.engine = engine
        log.info("verifier ready", extra={"model": backend.info.model, "backend": backend.info.backend})

    def ready_engine(self) -> VerifierEngine:
        if self.engine is None:
            raise EngineError(503, self.load_error or "model is still loading", "not_ready")
        return self.engine


def create_app(
    backend_factory: Callable[[], TargetBackend],
    session_ttl_s: float = 120.0,
    max_sessions: int = 64,
    scheduling: SchedulingConfig | None = None,
    keys: KeyRing | None = None,
    max_body_bytes: int = 16 << 20,
    max_sessions_per_edge: int = 32,
    max_queued_rounds: int = 64,
    grammars: GrammarCompiler | None = None,
) -> FastAPI:
    """The verifier's app. ``keys``: the edges' tokens every /v1 route and the channel require
    (none: open; /health stays open for probes). ``grammars``: compiles the grammars of
    constrained generations over the target's vocabulary (none: they are refused)."""
    service = VerifierService(backend_factory, session_ttl_s, max_sessions, scheduling or SchedulingConfig(),
                              grammars)
    app = FastAPI(title="Tandem verifier", version=str(PROTOCOL_VERSION), lifespan=_lifespan(service, session_ttl_s))
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(BearerAuth, ring=keys or KeyRing({}))
    _add_error_handlers(app, service)
    _add_info_routes(app, service)
    _add_channel(app, service, max_sessions_per_edge, max_queued_rounds)
    _add_generation_routes(app, service)
    return app


def _lifespan(service: VerifierService, session_ttl_s: float
              ) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Load the backend in the background, sweep idle sessions while serving, close the engine at the end."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        load_task = asyncio.create_task(service.load())

        async def sweep() -> None:
            while True:
                await asyncio.sleep(max(1.0, min(10.0, session_ttl_s / 4)))
                if service.engine is not None:
                    n = service.engine.expire_idle()
                    if n:
                        log.info("sessions expired", extra={"count": n})

        sweeper = asyncio.create_task(sweep())
        yield
        sweeper.cancel()
        load_task.cancel()
        if service.engine is not None:
            await service.engine.aclose()

    return lifespan


def _add_error_handlers(app: FastAPI, service: VerifierService) -> None:
    """Every error as an OpenAI error envelope (``verifier.core.errors``)."""

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        service.metrics.on_error(exc.code)
        response = _error(exc.status, str(exc), exc.code)
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error(exc.status_code, str(exc.detail), code)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        return _error(500, f"internal error: {type(exc).__name__}", "internal_error")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"{where}: {first['msg']}" if where else str(first["msg"]), "invalid_request")


def _add_info_routes(app: FastAPI, service: VerifierService) -> None:
    """/health, /metrics, /v1/info and /v1/stats."""

    @app.get("/health")
    async def health() -> JSONResponse:
        if service.engine is None:
            status = "failed" if service.load_error else "loading"
            return JSONResponse(status_code=503, content={"status": status, "error": service.load_error})
        return JSONResponse({"status": "ok", "sessions": service.engine.session_count})

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus exposition (open, like /health: scrapers carry no edge token)."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(f"{API_PREFIX}/info")
    async def info() -> ServerInfo:
        return ServerInfo.of(service.ready_engine().backend.info)

    @app.get(f"{API_PREFIX}/stats")
    async def stats() -> dict[str, float | int | None]:
        engine = service.ready_engine()
        scheduler = engine.scheduler
        return {**vars(engine.stats), "sessions": engine.session_count, "live_sessions": engine.live_sessions,
                **vars(scheduler.stats),
                "queue_depth": scheduler.queue_depth,
                "estimator_median_error": scheduler.estimator.median_relative_error()}


def _add_channel(app: FastAPI, service: VerifierService, max_sessions_per_edge: int, max_queued_rounds: int) -> None:
    """The WebSocket channel of protocol v2; one edge's connections share that edge's quota."""
    quotas: dict[str, EdgeQuota] = {}  # by key holder: one edge's connections share its quota

    @app.websocket(CHANNEL_PATH)
    async def channel(websocket: WebSocket) -> None:
        """The persistent channel of protocol v2 (verifier.core.wire): one per edge connection."""
        offered = websocket.scope.get("subprotocols", [])
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)

        async def send(data: bytes) -> None:
            await websocket.send_bytes(data)

        async def refuse(code: str, message: str) -> None:
            await send(encode(ChannelError(code=code, message=message)))
            await websocket.close(code=1008, reason=code)

        if SUBPROTOCOL not in offered:
            await refuse("bad_protocol", f"this verifier speaks protocol {PROTOCOL_VERSION} (WebSocket subprotocol "
                         f"{SUBPROTOCOL!r}); the edge offered {offered or 'none'}")
            return
        if service.engine is None:
            await refuse("not_ready", service.load_error or "model is still loading")
            return
        holder = websocket.scope.get("state", {}).get("key_holder")
        fresh = EdgeQuota(max_sessions_per_edge, max_queued_rounds)
        quota = quotas.setdefault(holder, fresh) if holder else fresh  # no keys: each connection on its own
        connection = ChannelConnection(service.engine, send, quota, on_failed=service.metrics.on_error)

        async def receive() -> bytes | None:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            data = message.get("bytes")
            return data if data is not None else (message.get("text") or "").encode()

        with contextlib.suppress(WebSocketDisconnect):
            await connection.serve(receive)
        with contextlib.suppress(Exception):
            await websocket.close()


def _add_generation_routes(app: FastAPI, service: VerifierService) -> None:
    """Cloud-only generation and prompt scoring."""

    @app.post(f"{API_PREFIX}/prompt_logprobs")
    async def prompt_logprobs(req: PromptLogprobsRequest) -> PromptLogprobs:
        return await service.ready_engine().prompt_logprobs(req)

    @app.post(f"{API_PREFIX}/generate")
    async def generate(req: GenerateRequest) -> StreamingResponse:
        """Cloud-only baseline: NDJSON lines of GeneratedTokens until max_tokens or a stop token."""
        engine = service.ready_engine()
        tokens = engine.generate(req)
        try:
            first = await tokens.__anext__()  # errors before any token keep their HTTP status
        except StopAsyncIteration:
            first = None

        async def lines() -> AsyncGenerator[bytes, None]:
            try:
                if first is not None:
                    yield first.model_dump_json().encode() + b"\n"
                async for chunk in tokens:
                    yield chunk.model_dump_json().encode() + b"\n"
            finally:
                await tokens.aclose()

        return StreamingResponse(lines(), media_type="application/x-ndjson")
