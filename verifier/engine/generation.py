"""Cloud-only decoding: the target generates alone and streams its tokens."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

from verifier.backends.base import NativeDecoder, TargetBackend
from verifier.core.protocol import GeneratedTokens, GenerateRequest, SessionCreate, TokenLogprobs
from verifier.core.wire import Round
from verifier.engine.registry import SessionRegistry
from verifier.engine.rounds import Rounds
from verifier.engine.state import EngineError, EngineStats
from verifier.engine.validation import check_request


class CloudGeneration:
    """The backend's own decoding where it has one (vLLM), else the round code path with no
    drafts, so its greedy output is by construction the verifier's."""

    def __init__(self, backend: TargetBackend, sessions: SessionRegistry, rounds: Rounds,
                 stats: EngineStats) -> None:
        self._backend = backend
        self._sessions = sessions
        self._rounds = rounds
        self._stats = stats

    async def generate(self, req: GenerateRequest) -> AsyncGenerator[GeneratedTokens, None]:
        check_request(self._backend.info, req.protocol_version, req.prompt_token_ids, req.sampling)
        if isinstance(self._backend, NativeDecoder) and self._backend.native_refusal(req.sampling) is None:
            async for tokens in self._decode_natively(self._backend, req):
                yield tokens
            return
        created = await self._sessions.create(SessionCreate.of(req))
        stops = set(req.stop_token_ids)
        room = self._backend.info.max_context - len(req.prompt_token_ids)
        try:
            for i in range(min(req.max_tokens, room)):
                start = len(req.prompt_token_ids) + i
                r = await self._rounds.verify(created.session_id, Round(sid=0, seq=i + 1, epoch=0, start=start,
                                                                        draft_token_ids=[]))
                if r is None:
                    raise EngineError(500, "a plain decoding step was answered stale", "internal_error")
                yield GeneratedTokens(token_ids=[r.next_token_id], compute_ms=r.compute_s * 1000,
                                      logprobs=[TokenLogprobs.of(t) for t in r.logprobs] if r.logprobs else None)
                if r.next_token_id in stops:
                    break
        finally:
            self._sessions.end(created.session_id)

    async def _decode_natively(self, decoder: NativeDecoder, req: GenerateRequest
                               ) -> AsyncGenerator[GeneratedTokens, None]:
        room = self._backend.info.max_context - len(req.prompt_token_ids)
        self._stats.native_streams += 1
        last = time.perf_counter()
        served = req.model_copy(update={"max_tokens": min(req.max_tokens, room)})  # within the context
        stream = decoder.decode(served)
        try:
            async for tokens, logprobs in stream:
                now = time.perf_counter()  # the backend's pace, queueing included: all it tells us
                yield GeneratedTokens(token_ids=tokens, compute_ms=(now - last) * 1000.0,
                                      logprobs=[TokenLogprobs.of(t) for t in logprobs] if logprobs else None)
                last = now
        except ValueError as exc:  # sampling the backend cannot honour exactly
            raise EngineError(400, str(exc), "unsupported_sampling") from exc
        finally:
            await stream.aclose()
