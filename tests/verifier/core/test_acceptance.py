"""Verification of a round, tested with numbers: greedy cases, an oracle, and exactness."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import chisquare

from tests.planted import planted_verify
from verifier.core.acceptance import RoundOutcome, verify_greedy, verify_sampled
from verifier.core.sampling import SparseDist, Stream, keyed_uniform, sample_index, top_p_filter, truncate_support


def onehot_logits(ids: list[int], vocab: int = 5) -> np.ndarray:
    out = np.zeros((len(ids), vocab))
    for r, i in enumerate(ids):
        out[r, i] = 10.0
    return out


# ---- greedy ---------------------------------------------------------------------------
def test_greedy_all_accepted_gives_bonus() -> None:
    outcome = verify_greedy([1, 2, 3], onehot_logits([1, 2, 3, 4]))
    assert (outcome.accepted, outcome.next_token_id) == (3, 4)


def test_greedy_first_mismatch_recovers_target_argmax() -> None:
    outcome = verify_greedy([1, 2, 3], onehot_logits([1, 0, 3, 4]))
    assert (outcome.accepted, outcome.next_token_id) == (1, 0)


def test_greedy_rejects_first_token() -> None:
    outcome = verify_greedy([4], onehot_logits([2, 1]))
    assert (outcome.accepted, outcome.next_token_id) == (0, 2)


def test_greedy_no_draft_is_plain_decoding() -> None:
    outcome = verify_greedy([], onehot_logits([3]))
    assert (outcome.accepted, outcome.next_token_id) == (0, 3)


def test_greedy_shape_checked() -> None:
    with pytest.raises(ValueError):
        verify_greedy([1, 2], onehot_logits([1, 2]))


# ---- oracle ------------------------------------------------------------------------------
def _reference_draw(weights: list[float], u: float) -> int:
    """Loop inverse-CDF draw from unnormalised weights (the oracle's own, not sample_index)."""
    v = u * sum(weights)
    acc = 0.0
    for t, w in enumerate(weights):
        acc += w
        if v < acc and w > 0:
            return t
    return max(t for t, w in enumerate(weights) if w > 0)


def reference_verify(draft, proposals, target_probs, seed, first_position):  # type: ignore[no-untyped-def]
    """Slow loop-and-dict reference of speculative rejection sampling."""
    for i, x in enumerate(draft):
        p = {t: float(v) for t, v in enumerate(target_probs[i]) if v > 0}
        q = {x: 1.0} if proposals is None else dict(zip(proposals[i].ids.tolist(), proposals[i].probs.tolist()))
        u = keyed_uniform(seed, first_position + i, Stream.ACCEPT)
        if u < p.get(x, 0.0) / q[x]:
            continue
        residual = [max(0.0, float(target_probs[i][t]) - q.get(t, 0.0)) for t in range(len(target_probs[i]))]
        if sum(residual) <= 0:
            residual = list(target_probs[i])
        return i, _reference_draw(residual, keyed_uniform(seed, first_position + i, Stream.NEXT))
    k = len(draft)
    return k, _reference_draw(list(target_probs[k]), keyed_uniform(seed, first_position + k, Stream.NEXT))


@pytest.mark.parametrize("id_only", [False, True])
def test_fast_matches_reference_oracle(id_only: bool) -> None:
    rng = np.random.default_rng(0)
    vocab = 7
    for case in range(300):
        k = int(rng.integers(0, 5))
        target = rng.dirichlet(np.ones(vocab) * 0.5, size=k + 1)
        proposals = [SparseDist(np.arange(vocab), rng.dirichlet(np.ones(vocab))) for _ in range(k)]
        draft = [int(rng.choice(vocab, p=q.probs)) for q in proposals]
        props = None if id_only else proposals
        fast = verify_sampled(draft, props, target, seed=case, first_position=3)
        assert (fast.accepted, fast.next_token_id) == reference_verify(draft, props, target, case, 3)


def test_draft_token_outside_proposal_is_refused() -> None:
    q = SparseDist(np.array([0, 1]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError):
        verify_sampled([2], [q], np.full((2, 3), 1 / 3), seed=0, first_position=0)


# ---- exactness: the output follows the target distribution --------------------------------
VOCAB = 4
Verify = Callable[[list[int], list[SparseDist] | None, np.ndarray, int, int], RoundOutcome]


def _markov(seed: int, concentration: float) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(VOCAB) * concentration, size=VOCAB)


def _speculate(target: np.ndarray, draft: np.ndarray, seed: int, n_out: int, gamma: int,
               proposal_mode: str, top_p: float, verify: Verify) -> tuple[int, ...]:
    """Generate n_out tokens of a Markov chain (start state 0) by draft + verify rounds."""
    tp = top_p_filter(target, top_p)
    seq = [0]
    while len(seq) - 1 < n_out:
        ctx = list(seq)
        drafts, proposals = [], []
        for _ in range(gamma):
            q_dense = top_p_filter(draft[ctx[-1]], top_p)
            q = truncate_support(q_dense, 2) if proposal_mode == "truncated" else truncate_support(q_dense, VOCAB)
            u = keyed_uniform(seed, len(ctx), Stream.DRAFT)
            x = int(q.ids[sample_index(q.probs, u)])
            drafts.append(x)
            proposals.append(q)
            ctx.append(x)
        rows = np.stack([tp[t] for t in ([seq[-1]] + drafts)])
        outcome = verify(drafts, None if proposal_mode == "id_only" else proposals, rows, seed, len(seq))
        seq.extend(drafts[: outcome.accepted] + [outcome.next_token_id])
    return tuple(seq[1 : n_out + 1])


def _chi_square_pvalue(verify: Verify, proposal_mode: str = "full", top_p: float = 1.0,
                       n_draws: int = 12000) -> float:
    """p-value of "the speculative output of 3 tokens follows the target's law"; asserts that
    sequences the target cannot produce never appear."""
    target = _markov(1, 0.7)
    draft = _markov(2, 0.7)
    tp = top_p_filter(target, top_p)
    n_out = 3
    counts: dict[tuple[int, ...], int] = {}
    for s in range(n_draws):
        out = _speculate(target, draft, 10_000 + s, n_out, 2, proposal_mode, top_p, verify)
        counts[out] = counts.get(out, 0) + 1
    cells = list(itertools.product(range(VOCAB), repeat=n_out))
    expected = []
    for seq in cells:
        prob, prev = 1.0, 0
        for t in seq:
            prob *= tp[prev, t]
            prev = t
        expected.append(prob * n_draws)
    observed = [counts.get(c, 0) for c in cells]
    # cells the target cannot produce must never be produced
    assert all(o == 0 for o, e in zip(observed, expected) if e == 0)
    obs = np.array([o for o, e in zip(observed, expected) if e > 0], dtype=float)
    exp = np.array([e for e in expected if e > 0])
    # merge tiny cells so the chi-square approximation holds
    small = exp < 5
    if small.any():
        obs = np.append(obs[~small], obs[small].sum())
        exp = np.append(exp[~small], exp[small].sum())
    return float(chisquare(obs, exp).pvalue)


@pytest.mark.parametrize("proposal_mode,top_p", [("full", 1.0), ("truncated", 1.0), ("id_only", 1.0),
                                                 ("full", 0.8)])
def test_output_distribution_matches_target(proposal_mode: str, top_p: float) -> None:
    assert _chi_square_pvalue(verify_sampled, proposal_mode, top_p) > 1e-4


# Twins: the same harness with a bug planted in the sampler (``tests.planted``) must fail the
# same check. Power at 4,000 draws and alpha 1e-4 (``tests.stats.chi_square_power``, each bug's law
# estimated from 60,000 of its own draws): 1.000 for every twin below; the laws' total variation
# from the target's is 0.14 (full), 0.21 (truncated), 0.10 (id_only), 0.15 (top_p 0.8) for
# ``residual_from_p`` and 0.32, 0.27, 0.15 for ``accept_with_p``. With id-only proposals q is
# one-hot, so accepting with p(d) is the right rule there: no twin.
@pytest.mark.parametrize(("bug", "proposal_mode", "top_p"), [
    ("residual_from_p", "full", 1.0), ("residual_from_p", "truncated", 1.0), ("residual_from_p", "id_only", 1.0),
    ("residual_from_p", "full", 0.8), ("accept_with_p", "full", 1.0), ("accept_with_p", "truncated", 1.0),
    ("accept_with_p", "full", 0.8),
])
def test_a_wrong_sampler_is_caught(bug: str, proposal_mode: str, top_p: float) -> None:
    """The statistical test has teeth: the same harness, run with a planted bug in the sampler,
    rejects it in every proposal mode the exactness test covers."""
    assert _chi_square_pvalue(planted_verify(bug), proposal_mode, top_p, n_draws=4000) <= 1e-4


def test_seeded_round_is_reproducible() -> None:
    target = np.random.default_rng(5).dirichlet(np.ones(6), size=3)
    q = [SparseDist(np.arange(6), np.full(6, 1 / 6))] * 2
    a = verify_sampled([1, 2], q, target, seed=99, first_position=4)
    b = verify_sampled([1, 2], q, target, seed=99, first_position=4)
    assert a == b


