"""The edge's session loops: how committed tokens are produced for one request.

Each loop is an async generator yielding lists of newly committed token ids. The caller
stops consuming when it has enough (EOS, stop string, max_tokens); closing the generator
ends the verifier session. ``speculative_loop`` is stop-and-wait: draft up to gamma tokens
(fewer when the draft's confidence drops below the request's threshold), verify, repeat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from proxy.draft.base import Drafter
from proxy.round_log import RoundLog
from proxy.verifier_client import VerifierClient
from verifier.core.drafting import DraftSampling, DraftTrigger
from verifier.core.protocol import SamplingParams, SloTargets


@dataclass
class GenerationStats:
    """Per-request counters, named as in the glossary (``verifier.core.sampling``);
    ``verify_compute_s`` sums the verifier's ``compute_ms``."""

    mode: str
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    rejections: int = 0  # rounds that ended on a rejected draft token
    draft_s: float = 0.0
    verify_wait_s: float = 0.0  # edge-side wall time of verify calls (network + cloud)
    verify_compute_s: float = 0.0  # cloud compute reported by the verifier
    bytes_up: int = 0
    bytes_down: int = 0

    def as_dict(self) -> dict[str, float | int | str]:
        d: dict[str, float | int | str] = {
            "mode": self.mode,
            "rounds": self.rounds,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "rejections": self.rejections,
            "acceptance_rate": round(self.accepted / self.drafted, 4) if self.drafted else 0.0,
            "draft_ms": round(self.draft_s * 1000, 2),
            "verify_wait_ms": round(self.verify_wait_s * 1000, 2),
            "verify_compute_ms": round(self.verify_compute_s * 1000, 2),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
        }
        return d


@dataclass(frozen=True)
class GenerationRequest:
    prompt_token_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    gamma: int
    stop_token_ids: frozenset[int]
    trigger: DraftTrigger | None = None  # when a model drafter ends a round early (None: gamma tokens)
    slo: SloTargets | None = None  # latency targets the verifier schedules this request's rounds by


def _draft_sampling(req: GenerationRequest, proposal_support: int, record_features: bool = False) -> DraftSampling:
    return DraftSampling(req.temperature, req.top_p, req.seed, proposal_support, req.trigger, record_features)


async def speculative_loop(
    req: GenerationRequest,
    drafter: Drafter,
    client: VerifierClient,
    stats: GenerationStats,
    proposal_support: int,
    round_log: RoundLog | None = None,
) -> AsyncGenerator[list[int], None]:
    """Stop-and-wait speculative decoding; gamma == 0 is cloud-only decoding. With a round log,
    every round's draft-token features and outcome are appended to it."""
    sampling = SamplingParams(temperature=req.temperature, top_p=req.top_p, seed=req.seed)
    dsampling = _draft_sampling(req, proposal_support, record_features=round_log is not None)
    session = await client.create_session(req.prompt_token_ids, sampling, req.slo)
    up0, down0 = client.bytes_up, client.bytes_down
    try:
        context = list(req.prompt_token_ids)
        produced = 0
        round_ = 0
        while produced < req.max_tokens:
            gamma = min(req.gamma, req.max_tokens - produced - 1)  # every round also yields one token
            drafts = []
            if gamma > 0:
                t0 = time.perf_counter()
                drafts = await asyncio.to_thread(drafter.propose, context, gamma, dsampling, req.stop_token_ids)
                stats.draft_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            round_ += 1
            result = await client.verify(session.session_id, round_, drafts)
            stats.rounds += 1
            stats.verify_wait_s += time.perf_counter() - t0
            stats.verify_compute_s += result.compute_ms / 1000
            stats.drafted += len(drafts)
            stats.accepted += result.accepted
            if result.accepted < len(drafts):
                stats.rejections += 1
            if round_log is not None:
                round_log.write(drafts, result.accepted)
            new = [d.token_id for d in drafts[: result.accepted]] + [result.next_token_id]
            context.extend(new)
            produced += len(new)
            stats.bytes_up = client.bytes_up - up0
            stats.bytes_down = client.bytes_down - down0
            yield new
    finally:
        await asyncio.shield(client.end_session(session.session_id))


async def cloud_loop(
    req: GenerationRequest, client: VerifierClient, stats: GenerationStats
) -> AsyncGenerator[list[int], None]:
    """Cloud-only baseline: the target decodes alone in the cloud and streams token ids."""
    sampling = SamplingParams(temperature=req.temperature, top_p=req.top_p, seed=req.seed)
    up0, down0 = client.bytes_up, client.bytes_down
    t0 = time.perf_counter()
    async for chunk in client.generate(req.prompt_token_ids, sampling, req.max_tokens, sorted(req.stop_token_ids),
                                       req.slo):
        stats.rounds += 1
        stats.verify_compute_s += chunk.compute_ms / 1000
        stats.verify_wait_s = time.perf_counter() - t0
        stats.bytes_up = client.bytes_up - up0
        stats.bytes_down = client.bytes_down - down0
        yield chunk.token_ids


async def draft_loop(
    req: GenerationRequest, drafter: Drafter, stats: GenerationStats
) -> AsyncGenerator[list[int], None]:
    """Edge-only: the draft model alone (fast, lower quality; also the offline fallback)."""
    dsampling = _draft_sampling(req, 1)
    context = list(req.prompt_token_ids)
    for _ in range(req.max_tokens):
        t0 = time.perf_counter()
        token = await asyncio.to_thread(drafter.next_token, context, dsampling)
        stats.draft_s += time.perf_counter() - t0
        context.append(token)
        yield [token]
