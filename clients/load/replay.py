"""Replayed edges and cloud-only clients, timed per token.

``replay_speculative`` sends a trace's rounds through the real verifier channel as a real edge
does (stop-and-wait, up to gamma draft tokens, cut before the first token whose confidence is below
the threshold), sleeping the draft time instead of drafting, and checks every committed token
against the target's recorded answer. ``stream_cloud`` is the target decoding alone on Tandem's
verifier; ``stream_openai`` streams from any OpenAI-compatible server (vLLM's own, for the
centralized baseline). Each of them checks its output token ids against the recorded answer and
raises ``ReplayMismatch`` where they differ (``stream_openai`` asks for the ids with vLLM's
``return_token_ids``; a server that sends none fails with ``UncheckedOutput``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from clients.bench.identity import token_difference
from clients.load.rounds import stop_and_wait_round
from clients.load.trace import Trace
from proxy.cloud.channel import VerifierChannel
from proxy.cloud.client import VerifierClient
from proxy.decoding.speculation import SpeculationState
from verifier.core.codec import DraftToken
from verifier.core.protocol import Generation, SloTargets


class ReplayMismatch(AssertionError):
    """The verifier committed a token the target's greedy answer does not have: not lossless."""


class UncheckedOutput(RuntimeError):
    """A server's answer without the token ids its check needs."""


@dataclass
class RequestTiming:
    start: float
    token_times: list[float] = field(default_factory=list)  # when each output token reached the client
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    rejections: int = 0  # rounds that ended on a rejected draft token (the words: clients.bench.metrics)
    error: str | None = None
    mismatch: str | None = None  # set with ``error`` when the output was not the target's answer (not lossless)

    @property
    def tokens(self) -> int:
        return len(self.token_times)

    def ttft_s(self) -> float | None:
        return self.token_times[0] - self.start if self.token_times else None

    def tpot_s(self) -> float | None:
        if len(self.token_times) < 2:
            return None
        return (self.token_times[-1] - self.token_times[0]) / (len(self.token_times) - 1)


def drafts_at(trace: Trace, position: int, gamma: int, threshold: float) -> list[int]:
    """The draft tokens a real edge sends at this position: up to gamma, cut before the first
    token whose confidence is below the threshold."""
    out: list[int] = []
    for token, conf in zip(trace.draft_token_ids[position][:gamma], trace.confidences[position][:gamma],
                           strict=True):
        if threshold > 0 and conf < threshold:
            break
        out.append(token)
    return out


async def replay_speculative(channel: VerifierChannel, trace: Trace, max_tokens: int, gamma: int,
                             threshold: float, slo: SloTargets | None) -> RequestTiming:
    timing = RequestTiming(time.perf_counter())
    target = trace.target_token_ids[:max_tokens]
    session = await channel.open(Generation(prompt_token_ids=trace.prompt_token_ids, slo=slo))
    state = SpeculationState.start(trace.prompt_token_ids)
    try:
        p = 0
        while p < len(target):
            k = min(gamma, len(target) - p - 1)
            drafts = drafts_at(trace, p, k, threshold) if k > 0 else []
            if drafts:
                await asyncio.sleep(len(drafts) * trace.draft_s_per_token)
            applied = await stop_and_wait_round(session, state, [DraftToken(token, None) for token in drafts])
            committed = applied.verified
            if committed != target[p:p + len(committed)]:
                raise ReplayMismatch(f"position {p}: committed {committed}, the target's answer has "
                                     f"{target[p:p + len(committed)]}")
            now = time.perf_counter()
            timing.token_times.extend([now] * len(committed))
            timing.rounds += 1
            timing.drafted += len(drafts)
            timing.accepted += applied.accepted
            timing.rejections += int(applied.accepted < len(drafts))
            p += len(committed)
    finally:
        session.close()
    return timing


async def stream_cloud(client: VerifierClient, trace: Trace, max_tokens: int, slo: SloTargets | None) -> RequestTiming:
    timing = RequestTiming(time.perf_counter())
    target = trace.target_token_ids[:max_tokens]
    got: list[int] = []
    async for chunk in client.generate(Generation(prompt_token_ids=trace.prompt_token_ids, slo=slo), len(target), []):
        now = time.perf_counter()
        got.extend(chunk.token_ids)
        timing.token_times.extend([now] * len(chunk.token_ids))
        timing.rounds += 1
    if (why := token_difference(target, got)) is not None:
        raise ReplayMismatch(f"cloud-only output differs from the recorded target answer: {why}")
    return timing


async def stream_openai(http: httpx.AsyncClient, model: str, trace: Trace, max_tokens: int) -> RequestTiming:
    """A completion of the same prompt token ids, streamed from an OpenAI-compatible server, its
    output token ids (vLLM's ``return_token_ids``: each chunk's own) checked against the target's
    answer. ``ignore_eos``: as many tokens as the answer has, an end of turn among them."""
    timing = RequestTiming(time.perf_counter())
    target = trace.target_token_ids[:max_tokens]
    body = {"model": model, "prompt": trace.prompt_token_ids, "temperature": 0, "stream": True, "ignore_eos": True,
            "max_tokens": len(target), "return_token_ids": True}
    got: list[int] | None = None
    async with http.stream("POST", "/v1/completions", json=body) as resp:
        if resp.status_code != 200:
            await resp.aread()
            raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if "error" in obj:
                raise RuntimeError(f"error in the stream: {obj['error'].get('message')}")
            if not obj.get("choices"):
                continue
            choice = obj["choices"][0]
            ids = choice.get("token_ids")
            if ids is not None:
                got = [*(got or []), *ids]
            new = len(ids) if ids is not None else int(bool(choice.get("text")))
            if new:
                timing.token_times.extend([time.perf_counter()] * new)
                timing.rounds += 1
    if got is None:
        raise UncheckedOutput("the server sent no token ids (vLLM's return_token_ids): its answer cannot be checked")
    if (why := token_difference(target, got)) is not None:
        raise ReplayMismatch(f"the server's output differs from the recorded target answer: {why}")
    return timing
