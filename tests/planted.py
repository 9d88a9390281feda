"""Planted bugs for the twins of the sampled-distribution tests, and the law each one produces.

A distribution test has one twin per planted bug: the same draws through the same code, with one
function the code path really calls replaced by a plausible wrong one, must fail the same check.
The law each bug produces (below) gives the power of that check at the test's sample size
(``tests.stats.chi_square_power``), computed next to the test.

The bugs (``BUGS``):

- ``residual_from_p``: at a rejection the recovered token is drawn from the target's p instead of
  the residual norm(max(0, p - q)) (``verify_sampled``, as the engine calls it).
- ``accept_with_p``: a draft token d is accepted with probability p(d) instead of min(1, p(d)/q(d))
  (``verify_sampled``, as the engine calls it).
- ``stale_draft_kept``: after a rejection the target's sequence state keeps the rejected draft
  token (the engine truncates it to ``len(committed)`` instead of ``len(committed) - 1``), so the
  next round is scored with that token still in the target's context, one position late. A
  target whose rows ignore their context cannot show it: ``PositionalBackend`` adds a term per
  position, as a real model's positional encoding does.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pytest

from tests.harness import BigramBackend, V
from tests.stats import chi_square_p
from verifier.backends.base import ScoreBatch, SequenceState
from verifier.core.acceptance import RoundOutcome
from verifier.core.sampling import FloatArray, SparseDist, Stream, keyed_uniform, sample_index

BUGS = ("residual_from_p", "accept_with_p", "stale_draft_kept")


class Verify(Protocol):
    def __call__(self, draft_token_ids: list[int], proposals: list[SparseDist] | None, target_probs: FloatArray,
                 seed: int, first_position: int) -> RoundOutcome: ...


def planted_verify(bug: str | None) -> Verify:
    """``verify_sampled`` with ``bug`` planted (None: none; ``test_planted_verify_without_a_bug_is_verify_sampled``
    shows that it then gives the real function's outcomes, so a twin differs from it by the bug only)."""

    def verify(draft_token_ids: list[int], proposals: list[SparseDist] | None, target_probs: FloatArray,
               seed: int, first_position: int) -> RoundOutcome:
        vocab = target_probs.shape[1]
        for i, x in enumerate(draft_token_ids):
            p = target_probs[i]
            q = np.eye(vocab)[x] if proposals is None else proposals[i].to_dense(vocab)
            u = keyed_uniform(seed, first_position + i, Stream.ACCEPT)
            if (u < p[x]) if bug == "accept_with_p" else (u * q[x] < p[x]):
                continue
            residual = p if bug == "residual_from_p" else np.maximum(p - q, 0.0)
            if not residual.sum() > 0:
                residual = p
            return RoundOutcome(i, sample_index(residual, keyed_uniform(seed, first_position + i, Stream.NEXT)))
        k = len(draft_token_ids)
        return RoundOutcome(k, sample_index(target_probs[k], keyed_uniform(seed, first_position + k, Stream.NEXT)))

    return verify


class PositionalBackend(BigramBackend):
    """The bigram target plus a term per position: the row scored for a token at index j of its
    sequence state is ``logits_of(token) + positional[j]``. Its law depends on what the state
    holds, as a real model's does, so a rejected draft left in the state shows in the output."""

    def __init__(self, logits_of: Callable[[int], npt.NDArray[np.float32]],
                 positional: npt.NDArray[np.float32]) -> None:
        super().__init__(logits_of=logits_of)
        self.positional = positional

    def score(self, batch: ScoreBatch) -> list[npt.NDArray[np.float32]]:
        ends = [s.length + len(batch.tokens_of(i)) for i, s in enumerate(batch.states)]
        rows = super().score(batch)
        return [r + self.positional[end - len(r):end] for r, end in zip(rows, ends, strict=True)]


def plant(monkeypatch: pytest.MonkeyPatch, bug: str) -> None:
    """Plant ``bug`` where the verifier engine's sampled rounds reach it."""
    if bug == "stale_draft_kept":
        truncate = BigramBackend.truncate

        def keeping_the_rejected_draft(self: BigramBackend, state: SequenceState, length: int) -> None:
            truncate(self, state, length + 1)  # the engine's len(committed) - 1, off by one

        monkeypatch.setattr(BigramBackend, "truncate", keeping_the_rejected_draft)
    elif bug in BUGS:
        monkeypatch.setattr("verifier.engine.rounds.verify_sampled", planted_verify(bug))
    else:
        raise ValueError(f"no such planted bug: {bug}")


# ---- the laws, and the check ------------------------------------------------------------------
def step_law(p: FloatArray, q: FloatArray, bug: str | None) -> FloatArray:
    """The law of the token that verifying one draft token d ~ q against p yields (d accepted, or
    the token recovered at its rejection): p itself without a bug; with ``residual_from_p``
    min(p, q) + (1 - sum(min(p, q))) p; with ``accept_with_p`` q p + (1 - sum(q p)) norm(max(0, p - q))."""
    if bug not in ("residual_from_p", "accept_with_p") or not p.sum() > 0:  # (all 0: a row never reached)
        return p
    kept = np.minimum(p, q) if bug == "residual_from_p" else q * p
    residual = p if bug == "residual_from_p" else np.maximum(p - q, 0.0)
    if not residual.sum() > 0:  # as verify_sampled: p <= q everywhere means p == q
        residual = p
    law: FloatArray = kept + (1.0 - kept.sum()) * residual / residual.sum()
    return law


def pair_law(p_first: FloatArray, q_first: FloatArray, p_second: FloatArray, q_second: FloatArray,
             p_second_late: FloatArray, bug: str | None) -> FloatArray:
    """[V, V]: the law of the first two output tokens (a, b) when rounds carry at least two draft
    tokens, drafted on the tokens before them (the first round from a fresh state).

    p_first, q_first: [V], the target's and the draft's distributions for a; p_second[a],
    q_second[a]: [V, V], for b after a; p_second_late[a]: the target's for b after a scored one
    position late (a rejected draft token left before a in its state). Both tokens are verified
    draft positions (a second round starts where the first was rejected), so a verification bug
    changes each step alike; the stale state changes b when a was recovered at a rejection, which
    happens with probability 1 - sum(min(p_first, q_first)), with a ~ norm(max(0, p_first - q_first)).
    """
    if bug == "stale_draft_kept":
        accepted = np.minimum(p_first, q_first)
        recovered = p_first - accepted  # (1 - sum(accepted)) * norm(max(0, p_first - q_first))
        law: FloatArray = accepted[:, None] * p_second + recovered[:, None] * p_second_late
        return law
    second = np.stack([step_law(p_second[a], q_second[a], bug) for a in range(len(p_first))])
    joint: FloatArray = step_law(p_first, q_first, bug)[:, None] * second
    return joint


def cells(law: FloatArray) -> dict[Hashable, float]:
    """A law of pairs ([V, V]) as ``tests.stats`` reads one: (a, b) -> probability."""
    return {c: float(law[c]) for c in itertools.product(range(V), repeat=2)}


def pair_p_value(pairs: Sequence[tuple[int, int]], law: FloatArray) -> float:
    """The check of the pair tests and of their twins: the chi-square p-value of the observed
    (a, b) pairs against ``law`` ([V, V]; ``tests.stats.chi_square_p``, cells with an expected
    count under 5 pooled), and 0 when a pair falls where the law has no mass."""
    if any(law[pair] == 0 for pair in pairs):
        return 0.0
    return chi_square_p(Counter(pairs), cells(law))


def first_token_law(p: npt.NDArray[np.float64], q: SparseDist, route: str, bug: str | None = None
                    ) -> npt.NDArray[np.float64]:
    """The law of the first verified token of a one-draft round (draft d ~ q) by each route's rule,
    or with a planted bug: 'accept_all' (every draft kept, as vLLM's CPU kernel does with pad
    drafts), 'residual_from_p' (rows: the replacement drawn from p), 'acceptance_with_p' (rows:
    d kept with p(d), not min(1, p(d)/q(d))), 'residual_keeps_d' (live: the replacement drawn
    from p, d included). (A sampler that lost the temperature, as vLLM 0.32's CPU expand kernel
    did, draws from another law altogether: ``sampled_position``'s last item.)"""
    law = np.zeros_like(p)
    qd = np.zeros_like(p)
    qd[q.ids] = q.probs
    residual = np.maximum(p - qd, 0.0)
    residual /= residual.sum()
    for d, qp in zip(q.ids, q.probs):
        if bug == "accept_all":
            keep = 1.0
        elif route == "rows":
            keep = p[d] if bug == "acceptance_with_p" else min(1.0, p[d] / qp)
        else:
            keep = p[d]
        if route == "rows":
            other = p if bug == "residual_from_p" else residual
        else:
            other = p.copy()
            if bug != "residual_keeps_d":
                other[d] = 0.0
            other = other / other.sum()
        law += qp * (1.0 - keep) * other
        law[d] += qp * keep
    return law
