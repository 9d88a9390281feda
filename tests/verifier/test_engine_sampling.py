"""Exactness of sampled verification through the engine: many concurrent sessions batched into
shared passes, drafts sampled from another model, and the output follows the target's law."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
from scipy.stats import chisquare

from tests.harness import BigramBackend, V
from verifier.core.codec import encode_round
from verifier.core.drafting import DraftSampling, draw_draft_token
from verifier.core.protocol import SamplingParams, SessionCreate
from verifier.core.sampling import softmax
from verifier.engine import VerifierEngine

TARGET = np.random.default_rng(11).normal(0.0, 1.0, size=(V, V)).astype(np.float32)
DRAFT = np.random.default_rng(12).normal(0.0, 1.0, size=(V, V)).astype(np.float32)


async def two_tokens(engine: VerifierEngine, seed: int) -> tuple[int, int]:
    created = await engine.create_session(SessionCreate(prompt_token_ids=[1], sampling=SamplingParams(
        temperature=1.0, seed=seed)))
    sampling = DraftSampling(1.0, 1.0, seed, proposal_support=V)
    out = [1]
    round_ = 0
    while len(out) < 3:
        ctx = list(out)
        drafts = []
        for _ in range(2):
            token = draw_draft_token(DRAFT[ctx[-1]], sampling, len(ctx))
            drafts.append(token)
            ctx.append(token.token_id)
        round_ += 1
        session = engine.session(created.session_id)
        result = await engine.verify(created.session_id, encode_round(0, round_, session.epoch, len(out), drafts))
        assert result is not None
        out += [d.token_id for d in drafts[: result.accepted]] + [result.next_token_id]
    engine.end_session(created.session_id)
    return out[1], out[2]


def test_sampled_rounds_of_concurrent_sessions_follow_the_target() -> None:
    async def body() -> tuple[list[tuple[int, int]], list[int]]:
        backend = BigramBackend(logits_of=lambda t: TARGET[t])  # a random row per previous token
        engine = VerifierEngine(backend, 60, 128)
        draws: list[tuple[int, int]] = []
        for start in range(0, 4000, 100):  # 100 sessions in flight at a time
            draws += await asyncio.gather(*(two_tokens(engine, seed) for seed in range(start, start + 100)))
        await engine.aclose()
        return draws, backend.batch_sizes

    draws, batch_sizes = asyncio.run(body())
    assert max(batch_sizes) > 8  # rounds of many sessions really shared passes
    p = softmax(TARGET)
    counts = {cell: 0 for cell in itertools.product(range(V), repeat=2)}
    for d in draws:
        counts[d] += 1
    expected = np.array([p[1, a] * p[a, b] * len(draws) for a, b in counts])
    observed = np.array(list(counts.values()), dtype=float)
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    assert chisquare(obs, exp).pvalue > 1e-4
