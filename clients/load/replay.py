"""Replayed edges and cloud-only clients, timed per token.

``replay_speculative`` sends a trace's rounds through the real verifier channel as a real edge
does (stop-and-wait, up to gamma draft tokens, cut before the first token whose confidence is below
the threshold), sleeping the draft time instead of drafting, and checks every committed token
against the target's recorded answer. ``stream_cloud`` is the target decoding alone on Tandem's
verifier; ``stream_openai`` streams from any OpenAI-compatible server (vLLM's own, for the
centralized baseline).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from clients.load.trace import Trace
from proxy.decoding import stop_and_wait_round
from proxy.speculation import SpeculationState
from proxy.verifier_channel import VerifierChannel
from proxy.verifier_client import VerifierClient
from verifier.core.drafting import DraftToken
from verifier.core.protocol import SamplingParams, SloTargets


class ReplayMismatch(AssertionError):
    """The verifier committed a token the target's greedy answer does not have: not lossless."""


@dataclass
class RequestTiming:
    start: float
    token_times: list[float] = field(default_factory=list)  # when each output token reached the client
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    error: str | None = None

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
    session = await channel.open(trace.prompt_token_ids, SamplingParams(), slo)
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
            p += len(committed)
    finally:
        session.close()
    return timing


async def stream_cloud(client: VerifierClient, trace: Trace, max_tokens: int, slo: SloTargets | None) -> RequestTiming:
    timing = RequestTiming(time.perf_counter())
    target = trace.target_token_ids[:max_tokens]
    got: list[int] = []
    async for chunk in client.generate(trace.prompt_token_ids, SamplingParams(), len(target), [], slo):
        now = time.perf_counter()
        got.extend(chunk.token_ids)
        timing.token_times.extend([now] * len(chunk.token_ids))
        timing.rounds += 1
    if got != target:
        raise ReplayMismatch("cloud-only output differs from the recorded target answer")
    return timing


async def stream_openai(http: httpx.AsyncClient, model: str, trace: Trace, max_tokens: int) -> RequestTiming:
    """A completion of the same prompt token ids, streamed from an OpenAI-compatible server."""
    timing = RequestTiming(time.perf_counter())
    body = {"model": model, "prompt": trace.prompt_token_ids, "temperature": 0, "stream": True, "ignore_eos": True,
            "max_tokens": min(max_tokens, len(trace.target_token_ids))}
    async with http.stream("POST", "/v1/completions", json=body) as resp:
        if resp.status_code != 200:
            await resp.aread()
            raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if obj.get("choices") and obj["choices"][0].get("text"):
                timing.token_times.append(time.perf_counter())
                timing.rounds += 1
    return timing
