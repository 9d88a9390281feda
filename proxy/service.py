"""The edge's serving object: one prepared request in, text events out.

It runs each choice on the decoding loop of the request's mode (``decoding.modes``), feeds
committed tokens to a ``TextEmitter`` and maps verifier failures to OpenAI errors. Preparing a
request is the intake's (``intake``), the verifier probe is ``cloud.probe``'s and the drafter
pool ``draft.pool``'s; routes in ``app`` only translate to HTTP/SSE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator
from dataclasses import replace

from proxy.cloud.breaker import CircuitBreaker
from proxy.cloud.channel import VerifierChannel
from proxy.cloud.client import VerifierClient
from proxy.cloud.errors import VerifierRejected, VerifierUnavailable
from proxy.cloud.probe import VerifierProbe
from proxy.decoding.modes import ModeLoops
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.draft.pool import DrafterPool, PoolFull
from proxy.draft.prediction import PredictionCounts
from proxy.intake import RequestIntake
from proxy.metrics import EdgeMetrics
from proxy.openai.errors import OpenAIError, verifier_unavailable
from proxy.openai.output import Event, Finished, TextDelta, TextEmitter, TokenEntry
from proxy.openai.resolve import (
    PreparedRequest,
)
from proxy.settings import EdgeSettings
from proxy.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class EdgeService:
    """Serves prepared requests (``intake`` prepares them): one generation per choice, on the
    decoding loop of the request's mode, with its drafter leased and its metrics counted."""

    def __init__(self, settings: EdgeSettings, tokenizer: Tokenizer, drafters: DrafterPool,
                 client: VerifierClient, channel: VerifierChannel) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.client = client
        self.channel = channel
        self.drafters = drafters
        self.verifier = VerifierProbe(client, tokenizer.vocab_size)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self.intake = RequestIntake(settings, tokenizer, drafters.standalone, self.verifier, self.breaker)
        self.loops = ModeLoops(settings, drafters, client, channel, self.breaker)
        self.metrics = EdgeMetrics(drafters)
        self.created = int(time.time())

    @property
    def model_id(self) -> str:
        return self.settings.served_model_name

    async def generate(self, prep: PreparedRequest) -> AsyncGenerator[Event, None]:
        """Text deltas then one Finished, per choice (``index``). Raises OpenAIError for failures.

        n > 1 runs the choices concurrently (one generation each, seeds of their own), except when
        greedy: every choice is then the same output, generated once. best_of > n generates
        best_of choices and returns the n with the highest cumulative logprob, renumbered."""
        if prep.generations == 1:
            async for ev in self._generate_one(prep, prep.gen):
                for index in range(prep.n):
                    yield replace(ev, index=index)
            return
        runs = [self._generate_one(prep, prep.choice(i), i) for i in range(prep.generations)]
        if prep.best_of <= prep.n:
            async for ev in merged(runs):
                yield ev
            return
        events: list[list[Event]] = [[] for _ in runs]
        async for ev in merged(runs):
            events[ev.index].append(ev)
        ranked = sorted(range(len(runs)), key=lambda i: (-cumulative_logprob(events[i]), i))[: prep.n]
        for index, chosen in enumerate(ranked):
            for ev in events[chosen]:
                yield replace(ev, index=index)

    async def _generate_one(self, prep: PreparedRequest, gen: GenerationRequest,
                            index: int = 0) -> AsyncGenerator[Event, None]:
        """One choice: text deltas then one Finished."""
        stats = GenerationStats(mode=prep.mode, logprobs=[] if gen.generation.logprobs is not None else None)
        emitter = TextEmitter(self.tokenizer, gen.max_tokens, gen.stop_token_ids, prep.stop)
        pending: list[TokenEntry] = []  # logprobs of output tokens whose text is still held back
        cumulative: float | None = 0.0 if stats.logprobs is not None else None  # None once a token has none
        # the tokens ``emitter.produced`` counts: returned when asked, and a prediction's usage counts them
        output_ids: list[int] | None = [] if prep.token_ids or gen.prediction is not None else None
        t0 = time.perf_counter()
        ttft: float | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                tokens = await self.loops.loop(prep.mode, gen, stats, stack)
                stack.push_async_callback(tokens.aclose)
                consumed = 0
                async for new in tokens:
                    for token in new:
                        text, is_output = emitter.push_one(token)
                        if output_ids is not None and len(output_ids) < emitter.produced:
                            output_ids.append(token)
                        if is_output and stats.logprobs is not None:
                            entry = stats.logprobs[consumed]
                            pending.append((token, entry))
                            cumulative = cumulative + entry.logprob if entry and cumulative is not None else None
                        consumed += 1
                        if text:
                            ttft = time.perf_counter() - t0 if ttft is None else ttft
                            yield TextDelta(text, stats.degraded, tuple(pending), index)
                            pending.clear()
                        if emitter.done:
                            break
                    if emitter.done:
                        break
        except Exception as exc:
            self.metrics.failed(prep.mode)
            if (error := openai_error_of(exc)) is None:
                raise
            raise error from exc
        tail = emitter.finish()
        if tail:  # held-back text; the logprobs of tokens that end in no text (a stop string) are dropped
            yield TextDelta(tail, stats.degraded, tuple(pending), index)
        out = stats.as_dict()
        if gen.prediction is not None and output_ids is not None:
            counts = PredictionCounts.of(gen.prediction, output_ids)
            out["accepted_prediction_tokens"], out["rejected_prediction_tokens"] = counts.accepted, counts.rejected
        elapsed = time.perf_counter() - t0
        out["elapsed_ms"] = round(elapsed * 1000, 2)
        self.metrics.finished(out, emitter.finish_reason, emitter.produced,
                              ttft if ttft is not None else (elapsed if tail else None), elapsed)
        log.info("request finished", extra={"tokens": emitter.produced, "reason": emitter.finish_reason, **out})
        prompt_tokens = len(gen.generation.prompt_token_ids)
        ids = tuple(output_ids) if output_ids is not None and prep.token_ids else None
        yield Finished(emitter.finish_reason, prompt_tokens, emitter.produced, out, index, cumulative, ids)

    async def prompt_entries(self, prep: PreparedRequest, top_logprobs: int) -> list[TokenEntry]:
        """The target's logprobs of the prompt's tokens (completions' echo with logprobs); the first
        token has none."""
        ids = prep.gen.generation.prompt_token_ids
        try:
            scored = await self.client.prompt_logprobs(ids, top_logprobs)
        except Exception as exc:
            if (error := openai_error_of(exc)) is None:
                raise
            raise error from exc
        return [(ids[0], None), *zip(ids[1:], scored, strict=True)]


def cumulative_logprob(events: list[Event]) -> float:
    """A finished choice's cumulative target logprob (-inf when unknown: it ranks last)."""
    for ev in events:
        if isinstance(ev, Finished) and ev.cumulative_logprob is not None:
            return ev.cumulative_logprob
    return -math.inf


async def merged(runs: list[AsyncGenerator[Event, None]]) -> AsyncGenerator[Event, None]:
    """The events of concurrent choices as they come, each stamped with its choice's index; the
    first failure of any choice ends them all. Closing the merge closes every choice."""
    queue: asyncio.Queue[tuple[int, Event | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, run: AsyncGenerator[Event, None]) -> None:
        try:
            async for ev in run:
                await queue.put((index, replace(ev, index=index)))
            await queue.put((index, None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            await queue.put((index, exc))

    tasks = [asyncio.get_running_loop().create_task(pump(i, run)) for i, run in enumerate(runs)]
    try:
        left = len(runs)
        while left:
            _, item = await queue.get()
            if item is None:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for run in runs:
            await run.aclose()


def openai_error_of(exc: Exception) -> OpenAIError | None:
    """A full drafter pool or a verifier failure as the client sees it; None for anything else."""
    if isinstance(exc, PoolFull):
        return OpenAIError(429, f"The edge is at capacity: {exc}. Retry shortly.", "rate_limit_error", None,
                           "too_many_requests", retry_after_s=1.0)
    if isinstance(exc, VerifierUnavailable):
        return verifier_unavailable(str(exc))
    if not isinstance(exc, VerifierRejected):
        return None
    if exc.code == "unsupported_sampling":
        return OpenAIError(400, str(exc), "invalid_request_error", "temperature", exc.code)
    if exc.code in ("unsupported_grammar", "invalid_grammar"):
        return OpenAIError(400, str(exc), "invalid_request_error", "response_format", exc.code)
    if exc.status == 429:
        return OpenAIError(429, f"the verifier's quota for this edge is used up: {exc}", "rate_limit_error", None,
                           exc.code, retry_after_s=1.0)
    return OpenAIError(502, f"verifier refused the request: {exc}", "server_error", None, "verifier_error")
