"""Exactness of sampled verification through the engine: many concurrent sessions batched into
shared passes, drafts sampled from another model, and the output follows the target's law.

Each distribution test has twins, one per planted bug of ``tests.planted``, that run the same
draws through the same engine with the bug planted and must fail the same check
(``tests.planted.pair_p_value`` at ``ALPHA``): a chi-square of the first two output tokens (a, b)
over the V x V cells against the target's law, cells with an expected count under 5 pooled, a
draw outside the law's support failing it outright.

Power calculation (``test_each_check_has_the_power_to_catch_each_bug`` recomputes it): each bug
gives the pair (a, b) a law of its own (``Case.law``, from ``tests.planted.pair_law``), whose
distance from the target's makes the statistic noncentral chi-square with df = bins - 1 and
lambda = n * sum over bins of (law_bug - law)^2 / law; the power is the chance that it exceeds
the 1 - ALPHA quantile of the central one. Each n is the smallest multiple of 100 whose power
is >= 1 - 1e-6 against every bug (the tests took 4000 and 2500 draws before, without twins):

    case     n     bug               TV(law_bug, law)  lambda  df   power
    plain    800   residual_from_p   0.21              156     33   1 - 1e-8
    plain    800   accept_with_p     0.42              578     33   1 - <1e-16
    plain    800   stale_draft_kept  0.18              147     33   1 - 1e-7
    shaped   600   residual_from_p   0.23              149     28   1 - 2e-8
    shaped   600   accept_with_p     0.35              283     28   1 - <1e-16
    shaped   600   stale_draft_kept  0.23              425     28   1 - <1e-16
    grammar  500   residual_from_p   0.20              133     15   1 - 7e-9
    grammar  500   accept_with_p     0.38              323     15   1 - <1e-16
    grammar  500   stale_draft_kept  0.21              487     15   1 - <1e-16
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from proxy.draft.draws import DraftSampling, draw_draft_token
from tests.harness import V, letter_grammar_tokenizer
from tests.planted import BUGS, PositionalBackend, cells, pair_law, pair_p_value, plant, planted_verify
from tests.stats import chi_square_power, total_variation
from verifier.core.acceptance import verify_sampled
from verifier.core.codec import encode_round
from verifier.core.grammar import GrammarCompiler, GrammarSpec
from verifier.core.protocol import GrammarParams, SamplingParams, SessionCreate
from verifier.core.sampling import FloatArray, SparseDist, softmax, target_distribution
from verifier.engine import VerifierEngine

GRAMMARS = GrammarCompiler(letter_grammar_tokenizer)
TARGET = np.random.default_rng(11).normal(0.0, 1.0, size=(V, V)).astype(np.float32)
DRAFT = np.random.default_rng(12).normal(0.0, 1.0, size=(V, V)).astype(np.float32)
#: the target's term per position of its state (``PositionalBackend``)
POSITIONAL = np.random.default_rng(13).normal(0.0, 1.0, size=(64, V)).astype(np.float32)
ALPHA = 1e-4
Pair = tuple[int, int]


async def two_tokens(engine: VerifierEngine, seed: int, shaping: dict[str, Any] | None = None,
                     grammar: GrammarSpec | None = None) -> Pair:
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
             grammar: GrammarSpec | None = None) -> tuple[list[Pair], list[int]]:
    async def body() -> tuple[list[Pair], list[int]]:
        backend = PositionalBackend(lambda t: TARGET[t], POSITIONAL)  # a random row per previous token and position
        engine = VerifierEngine(backend, 60, 128, grammars=GRAMMARS)
        draws: list[Pair] = []
        for start in range(0, n, 100):  # 100 sessions in flight at a time
            draws += await asyncio.gather(*(two_tokens(engine, seed, shaping, grammar)
                                            for seed in range(start, min(n, start + 100))))
        await engine.aclose()
        return draws, backend.batch_sizes

    return asyncio.run(body())


# ---- the cases: what is asked, and the target's law with it ------------------------------------
SHAPING: dict[str, Any] = {"presence_penalty": 0.7, "frequency_penalty": 0.6, "repetition_penalty": 1.4,
                           "logit_bias": {3: 1.5, 5: -100.0}, "min_tokens": 1, "stop_token_ids": [2],
                           "top_k": 8, "min_p": 0.02}
SHAPED = SamplingParams(temperature=1.0, **SHAPING)
GRAMMAR = GrammarSpec("regex", "[b-g][a-e]|h[i-o]", (0,))


def plain(logits: npt.NDArray[np.float32], output: list[int]) -> FloatArray:
    return softmax(logits).astype(np.float64)


def shaped(logits: npt.NDArray[np.float32], output: list[int]) -> FloatArray:
    """The target's law *with* the processing: p(a) from the processed row after the prompt,
    p(b | a) from the row after a, where a now counts as output (penalised, and min_tokens met)."""
    processed = SHAPED.processing().apply(logits, [1], output)
    return target_distribution(processed, 1.0, 1.0, SHAPED.top_k, SHAPED.min_p)


def grammatical(logits: npt.NDArray[np.float32], output: list[int]) -> FloatArray:
    """Regex [b-g][a-e]|h[i-o]: the row masked to the grammar after ``output`` (the draft masks
    its own rows alike, often outside what the target favours)."""
    allowed = np.zeros(V, dtype=bool)
    if not output:
        allowed[2:9] = True  # b..g, h
    elif 2 <= output[0] < 8:
        allowed[1:6] = True  # a..e after b..g
    elif output[0] == 8:
        allowed[9:16] = True  # i..o after h
    p = np.where(allowed, softmax(logits), 0.0)
    out: FloatArray = p / p.sum() if p.sum() else p
    return out


@dataclass(frozen=True)
class Case:
    """One distribution test: its sample size, what the requests ask, and how that turns the
    target's and the draft's logits into distributions (``dist``)."""

    n: int  # sample size, from the power calculation (module docstring)
    dist: Callable[[npt.NDArray[np.float32], list[int]], FloatArray]  # logits, output -> distribution
    shaping: dict[str, Any] | None = None
    grammar: GrammarSpec | None = None

    def law(self, bug: str | None = None) -> FloatArray:
        """[V, V]: the law of the first two output tokens, the target's (None) or with ``bug``. The
        target scores the prompt token at index 0 of its state, a at 1 (at 2 after a rejected
        draft token left in its state); the draft reads the previous token only."""
        d = self.dist
        return pair_law(d(TARGET[1] + POSITIONAL[0], []), d(DRAFT[1], []),
                        np.stack([d(TARGET[a] + POSITIONAL[1], [a]) for a in range(V)]),
                        np.stack([d(DRAFT[a], [a]) for a in range(V)]),
                        np.stack([d(TARGET[a] + POSITIONAL[2], [a]) for a in range(V)]), bug)

    def draws(self) -> list[Pair]:
        return draws_of(self.n, self.shaping, self.grammar)[0]


CASES = {"plain": Case(800, plain), "shaped": Case(600, shaped, SHAPING),
         "grammar": Case(500, grammatical, grammar=GRAMMAR)}


# ---- the target's law is followed ---------------------------------------------------------------
def test_sampled_rounds_of_concurrent_sessions_follow_the_target() -> None:
    case = CASES["plain"]
    draws, batch_sizes = draws_of(case.n)
    assert max(batch_sizes) > 8  # rounds of many sessions really shared passes
    assert pair_p_value(draws, case.law()) > ALPHA


def test_with_penalties_bias_top_k_and_min_p_the_output_follows_the_processed_target() -> None:
    case = CASES["shaped"]
    p_first = case.law().sum(axis=1)
    assert p_first[2] == 0 and p_first[5] == 0 and np.count_nonzero(p_first) <= 8
    assert pair_p_value(case.draws(), case.law()) > ALPHA


def test_with_a_grammar_the_output_follows_the_targets_constrained_distribution() -> None:
    case = CASES["grammar"]
    assert pair_p_value(case.draws(), case.law()) > ALPHA


# ---- ... and a planted bug is caught by the same check ------------------------------------------
@pytest.mark.parametrize("bug", BUGS)
@pytest.mark.parametrize("name", list(CASES))
def test_a_planted_bug_fails_the_same_check(name: str, bug: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    plant(monkeypatch, bug)
    assert pair_p_value(case.draws(), case.law()) <= ALPHA


def test_each_check_has_the_power_to_catch_each_bug() -> None:
    """The power calculation of the module docstring, from each case's own p and q."""
    for name, case in CASES.items():
        null = cells(case.law())
        assert sum(null.values()) == pytest.approx(1.0)
        for bug in BUGS:
            actual = cells(case.law(bug))
            assert sum(actual.values()) == pytest.approx(1.0)
            power = chi_square_power(null, actual, case.n, ALPHA)
            assert power >= 1 - 1e-6, (name, bug, total_variation(null, actual), power)


def test_planted_verify_without_a_bug_is_verify_sampled() -> None:
    """The twins' sampler differs from the real one by the planted bug only."""
    rng = np.random.default_rng(0)
    for case in range(300):
        k = int(rng.integers(0, 4))
        target = rng.dirichlet(np.ones(7) * 0.5, size=k + 1)
        proposals = [SparseDist(np.arange(7), rng.dirichlet(np.ones(7))) for _ in range(k)]
        draft = [int(rng.choice(7, p=q.probs)) for q in proposals]
        for props in (proposals, None):
            assert planted_verify(None)(draft, props, target, case, 3) == verify_sampled(draft, props, target, case, 3)
