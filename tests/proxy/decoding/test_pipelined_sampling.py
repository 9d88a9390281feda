"""Exactness of sampled speculation through the pipelined edge: rounds drafted on top of rounds
still in flight (then verified, rejected or answered stale), and the output still follows the
target's law, at the positions the first round covers and at those the pipelined second covers.

The check (``p_value``): the smaller of two chi-square p-values, of the output tokens (1, 2) and
(3, 4) against the target's law of each pair (cells with an expected count under 5 pooled, a
pair outside the law's support failing outright); it passes above ``ALPHA``. Its twins run the
same requests with a bug of ``tests.planted`` planted and must fail it. A round drafted on a token
that was then rejected and kept in use anyway is refused by the verifier before any output
(``test_a_round_drafted_on_a_rejected_token_kept_in_use_is_refused``); the stale draft that could
change the law silently is the one left in the target's state, the twin ``stale_draft_kept``.

Power calculation (``test_the_check_has_the_power_to_catch_each_bug`` recomputes it): the check
has at least the power of the first pair's chi-square alone, and that pair's law under each bug
is exact (``tests.planted.pair_law``: tokens 1 and 2 are both verified draft positions, the first
round starting from a fresh state; tokens 3 and 4 depend on how the rounds fell). The statistic
is then noncentral chi-square with df = bins - 1 and lambda = N * sum over bins of
(law_bug - law)^2 / law; the power is the chance that it exceeds the 1 - ALPHA quantile of the
central one. N is the smallest multiple of 100 whose power is >= 1 - 1e-6 against every bug
(500 gives 1 - 1e-4; the test took 2500 requests before, without twins, and an unrelated draft,
with which N would be 1000):

    N    bug               TV(law_bug, law)  lambda  df   power (first pair alone)
    600  residual_from_p   0.24              145     31   1 - 9e-8
    600  accept_with_p     0.43              392     31   1 - <1e-16
    600  stale_draft_kept  0.22              146     31   1 - 7e-8
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from proxy.cloud.errors import VerifierRejected
from proxy.decoding.pipeline import PipelinePolicy
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.decoding.speculative import speculative_loop
from tests.harness import V, start
from tests.planted import BUGS, PositionalBackend, cells, pair_law, pair_p_value, plant
from tests.stats import chi_square_power, total_variation
from verifier.core.protocol import Generation, SamplingParams
from verifier.core.sampling import FloatArray, softmax

TARGET = np.random.default_rng(31).normal(0.0, 1.0, size=(V, V)).astype(np.float32)
#: the target's logits sharpened, plus noise of its own: a draft that overproposes the target's favourites
#: (many rejections, whose residual is far from p: the twins' effects are large, N small)
DRAFT = (2.0 * TARGET + np.random.default_rng(32).normal(0.0, 1.0, size=(V, V))).astype(np.float32)
#: the target's term per position of its state (``PositionalBackend``)
POSITIONAL = np.random.default_rng(33).normal(0.0, 1.0, size=(64, V)).astype(np.float32)
N = 600  # requests, from the power calculation (module docstring)
ALPHA = 1e-4


def target_row(j: int) -> FloatArray:
    """[V, V]: the target's law of the token after a at state index j (row a)."""
    rows: FloatArray = softmax(TARGET + POSITIONAL[j]).astype(np.float64)
    return rows


FIRST = target_row(0)[1]  # after the prompt [1]
FIRST_PAIR = FIRST[:, None] * target_row(1)  # tokens 1 and 2
THIRD = FIRST @ target_row(1) @ target_row(2)
SECOND_PAIR = THIRD[:, None] * target_row(3)  # tokens 3 and 4


def outputs(n: int) -> tuple[list[list[int]], int]:
    """The first 4 output tokens of ``n`` seeded requests, and the rounds answered stale."""
    async def body() -> tuple[list[list[int]], int]:
        h = await start(PositionalBackend(lambda t: TARGET[t], POSITIONAL))
        drafter = h.drafters[0]
        drafter.logits_of = lambda t: DRAFT[t]  # another model: many rejections, stale pipelined rounds
        drafter.wrong = lambda p: False
        outs, stale = [], 0
        try:
            for seed in range(n):
                gen = Generation(prompt_token_ids=[1], sampling=SamplingParams(temperature=1.0, seed=seed))
                req = GenerationRequest(gen, max_tokens=4, stop_token_ids=frozenset(),
                                        policy=PipelinePolicy.pipelined(2, 3))
                stats = GenerationStats(mode="speculative")
                out: list[int] = []
                async for new in speculative_loop(req, drafter, h.ctx(V), stats):
                    out += new
                    if len(out) >= 4:
                        break
                outs.append(out[:4])
                stale += stats.stale_rounds
        finally:
            await h.aclose()
        return outs, stale

    return asyncio.run(body())


def p_value(outs: Sequence[list[int]]) -> float:
    """The check of the test and of its twins (module docstring)."""
    return min(pair_p_value([(o[0], o[1]) for o in outs], FIRST_PAIR),
               pair_p_value([(o[2], o[3]) for o in outs], SECOND_PAIR))


def test_pipelined_sampled_speculation_follows_the_target() -> None:
    outs, stale = outputs(N)
    assert stale > 0  # rounds were drafted on top of rounds that then failed
    assert p_value(outs) > ALPHA


@pytest.mark.parametrize("bug", BUGS)
def test_a_planted_bug_fails_the_same_check(bug: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plant(monkeypatch, bug)
    outs, _ = outputs(N)
    assert p_value(outs) <= ALPHA


def test_a_round_drafted_on_a_rejected_token_kept_in_use_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stale round kept, literally: the epoch rule that edge and verifier share
    (``parts_from_sent``) planted so that a rejection no longer ends the epoch, so the round
    drafted on top of the rejected token stays in use on both sides. The verifier then meets it
    at the position it was drafted for, past the tokens verified since, and refuses it: this bug
    fails loudly before any output reaches the check. (The stale draft that can change the law
    silently, the twin ``stale_draft_kept`` above, is the one left in the target's state.)"""

    def epoch_ends_only_on_a_bonus_mismatch(accepted: int, drafted: int, next_token_id: int,
                                            next_sent: int | None) -> bool:
        return next_sent is not None and next_sent != next_token_id

    for module in ("proxy.decoding.speculation", "verifier.engine.rounds"):
        monkeypatch.setattr(f"{module}.parts_from_sent", epoch_ends_only_on_a_bonus_mismatch)
    with pytest.raises(VerifierRejected, match="tokens are verified"):
        outputs(N)


def test_the_check_has_the_power_to_catch_each_bug() -> None:
    """The power calculation of the module docstring, from the test's own p and q."""
    draft = softmax(DRAFT).astype(np.float64)
    null = cells(FIRST_PAIR)
    for bug in BUGS:
        actual = cells(pair_law(FIRST, draft[1], target_row(1), draft, target_row(2), bug))
        assert sum(actual.values()) == pytest.approx(1.0)
        power = chi_square_power(null, actual, N, ALPHA)
        assert power >= 1 - 1e-6, (bug, total_variation(null, actual), power)
