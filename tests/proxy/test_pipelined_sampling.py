"""Exactness of sampled speculation through the pipelined edge: rounds drafted on top of rounds
still in flight (then verified, rejected or answered stale), and the output still follows the
target's law, at the positions the first round covers and at those the pipelined second covers."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import numpy.typing as npt
from scipy.stats import chisquare

from proxy.decoding import GenerationRequest, GenerationStats, speculative_loop
from proxy.pipeline import PipelinePolicy
from tests.harness import BigramBackend, V, start
from verifier.core.protocol import SamplingParams
from verifier.core.sampling import softmax

TARGET = np.random.default_rng(31).normal(0.0, 1.0, size=(V, V)).astype(np.float32)
DRAFT = np.random.default_rng(32).normal(0.0, 1.0, size=(V, V)).astype(np.float32)
N = 2500


def chi_square_p(draws: list[tuple[int, int]], joint: npt.NDArray[np.float64]) -> float:
    counts = {cell: 0 for cell in itertools.product(range(V), repeat=2)}
    for d in draws:
        counts[d] += 1
    expected = np.array([joint[a, b] * len(draws) for a, b in counts])
    observed = np.array(list(counts.values()), dtype=float)
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    return float(chisquare(obs, exp).pvalue)


def test_pipelined_sampled_speculation_follows_the_target() -> None:
    async def body() -> tuple[list[list[int]], int]:
        h = await start(BigramBackend(logits_of=lambda t: TARGET[t]))
        drafter = h.drafters[0]
        drafter.logits_of = lambda t: DRAFT[t]  # another model: many rejections, stale pipelined rounds
        drafter.wrong = lambda p: False
        outs, stale = [], 0
        for seed in range(N):
            req = GenerationRequest(prompt_token_ids=[1], max_tokens=4, sampling=SamplingParams(temperature=1.0,
                                    seed=seed), stop_token_ids=frozenset(), policy=PipelinePolicy.pipelined(2, 3))
            stats = GenerationStats(mode="speculative")
            out: list[int] = []
            async for new in speculative_loop(req, drafter, h.channel, stats, V):
                out += new
                if len(out) >= 4:
                    break
            outs.append(out[:4])
            stale += stats.stale_rounds
        await h.aclose()
        return outs, stale

    outs, stale = asyncio.run(body())
    assert stale > 0  # rounds were drafted on top of rounds that then failed
    p = softmax(TARGET).astype(np.float64)
    first = p[1]
    second = first @ p
    third = second @ p
    assert chi_square_p([(o[0], o[1]) for o in outs], first[:, None] * p) > 1e-4
    assert chi_square_p([(o[2], o[3]) for o in outs], third[:, None] * p) > 1e-4
