"""Exactness of sampled verification through the engine: many concurrent sessions batched into
shared passes, drafts sampled from another model, and the output follows the target's law."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import chisquare

from tests.harness import BigramBackend, V, letter_grammar_tokenizer
from verifier.core.codec import encode_round
from verifier.core.drafting import DraftSampling, draw_draft_token
from verifier.core.grammar import GrammarCompiler, GrammarSpec
from verifier.core.protocol import GrammarParams, SamplingParams, SessionCreate
from verifier.core.sampling import FloatArray, softmax, target_distribution
from verifier.engine import VerifierEngine

GRAMMARS = GrammarCompiler(letter_grammar_tokenizer)
TARGET = np.random.default_rng(11).normal(0.0, 1.0, size=(V, V)).astype(np.float32)
DRAFT = np.random.default_rng(12).normal(0.0, 1.0, size=(V, V)).astype(np.float32)


async def two_tokens(engine: VerifierEngine, seed: int, shaping: dict[str, Any] | None = None,
                     grammar: GrammarSpec | None = None) -> tuple[int, int]:
    params = SamplingParams(temperature=1.0, seed=seed, **(shaping or {}))
    created = await engine.create_session(SessionCreate(
        prompt_token_ids=[1], sampling=params, grammar=GrammarParams.of(grammar) if grammar else None))
    constraint = GRAMMARS.compile(grammar) if grammar else None
    sampling = DraftSampling(1.0, 1.0, seed, proposal_support=V, top_k=params.top_k, min_p=params.min_p,
                             processing=params.processing(), output_start=1, constraint=constraint)
    out = [1]
    round_ = 0
    while len(out) < 3:
        ctx = list(out)
        drafts = []
        for _ in range(2):
            token = draw_draft_token(sampling.processed(DRAFT[ctx[-1]], ctx), sampling, len(ctx))
            drafts.append(token)
            ctx.append(token.token_id)
        round_ += 1
        session = engine.session(created.session_id)
        result = await engine.verify(created.session_id, encode_round(0, round_, session.epoch, len(out), drafts))
        assert result is not None
        out += [d.token_id for d in drafts[: result.accepted]] + [result.next_token_id]
    engine.end_session(created.session_id)
    return out[1], out[2]


def draws_of(n: int, shaping: dict[str, Any] | None = None,
             grammar: GrammarSpec | None = None) -> tuple[list[tuple[int, int]], list[int]]:
    async def body() -> tuple[list[tuple[int, int]], list[int]]:
        backend = BigramBackend(logits_of=lambda t: TARGET[t])  # a random row per previous token
        engine = VerifierEngine(backend, 60, 128, grammars=GRAMMARS)
        draws: list[tuple[int, int]] = []
        for start in range(0, n, 100):  # 100 sessions in flight at a time
            draws += await asyncio.gather(*(two_tokens(engine, seed, shaping, grammar)
                                            for seed in range(start, start + 100)))
        await engine.aclose()
        return draws, backend.batch_sizes

    return asyncio.run(body())


def assert_follows(draws: list[tuple[int, int]], p_first: FloatArray, p_second: FloatArray) -> None:
    """Chi-square of the (first, second) token pairs against p_first[a] * p_second[a, b]."""
    counts = {cell: 0 for cell in itertools.product(range(V), repeat=2)}
    for d in draws:
        counts[d] += 1
    expected = np.array([p_first[a] * p_second[a, b] * len(draws) for a, b in counts])
    observed = np.array(list(counts.values()), dtype=float)
    assert observed[expected == 0].sum() == 0  # nothing outside the support (top_k, min_p, bans)
    observed, expected = observed[expected > 0], expected[expected > 0]
    small = expected < 5  # lumped into one cell
    obs = np.append(observed[~small], observed[small].sum()) if small.any() else observed
    exp = np.append(expected[~small], expected[small].sum()) if small.any() else expected
    assert chisquare(obs, exp).pvalue > 1e-4


def test_sampled_rounds_of_concurrent_sessions_follow_the_target() -> None:
    draws, batch_sizes = draws_of(4000)
    assert max(batch_sizes) > 8  # rounds of many sessions really shared passes
    p = softmax(TARGET)
    assert_follows(draws, p[1], p)


def test_with_penalties_bias_top_k_and_min_p_the_output_follows_the_processed_target() -> None:
    """The target's law *with* the processing: p(a) from the processed row after the prompt,
    p(b | a) from the row after a, where a now counts as output (penalised, and min_tokens met)."""
    shaping: dict[str, Any] = {"presence_penalty": 0.7, "frequency_penalty": 0.6, "repetition_penalty": 1.4,
                               "logit_bias": {3: 1.5, 5: -100.0}, "min_tokens": 1, "stop_token_ids": [2],
                               "top_k": 8, "min_p": 0.02}
    params = SamplingParams(temperature=1.0, **shaping)
    proc = params.processing()

    def dist(logits: npt.NDArray[np.float32], output: list[int]) -> FloatArray:
        return target_distribution(proc.apply(logits, [1], output), 1.0, 1.0, params.top_k, params.min_p)

    p_first = dist(TARGET[1], [])
    p_second = np.stack([dist(TARGET[a], [a]) for a in range(V)])
    assert p_first[2] == 0 and p_first[5] == 0 and np.count_nonzero(p_first) <= 8
    draws, _ = draws_of(4000, shaping)
    assert_follows(draws, p_first, p_second)


def test_with_a_grammar_the_output_follows_the_targets_constrained_distribution() -> None:
    """Regex [b-g][a-e]|h[i-o]: the target's law masked to the grammar at each position (the
    draft samples from its own masked rows, often outside what the target favours)."""
    spec = GrammarSpec("regex", "[b-g][a-e]|h[i-o]", (0,))
    first = np.zeros(V, dtype=bool)
    first[2:8] = first[8] = True  # b..g, h
    second = np.zeros((V, V), dtype=bool)
    for a in range(2, 8):
        second[a, 1:6] = True  # a..e after b..g
    second[8, 9:16] = True  # i..o after h

    def masked(row: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_]) -> FloatArray:
        p = np.where(allowed, softmax(row), 0.0)
        out: FloatArray = p / p.sum() if p.sum() else p
        return out

    p_first = masked(TARGET[1], first)
    p_second = np.stack([masked(TARGET[a], second[a]) for a in range(V)])
    draws, _ = draws_of(2500, grammar=spec)
    assert_follows(draws, p_first, p_second)
