"""Draft-quality metrics, pure functions."""

from __future__ import annotations

from collections.abc import Sequence


def greedy_matches(draft_argmax: Sequence[int], continuation: Sequence[int]) -> list[bool]:
    """Per position: does the draft's argmax equal the token the target produced there?"""
    if len(draft_argmax) != len(continuation):
        raise ValueError("one draft prediction per continuation token is required")
    return [int(a) == int(b) for a, b in zip(draft_argmax, continuation)]


def mean_accepted_length(matches: Sequence[bool], gamma: int) -> float:
    """Mean draft tokens accepted per round when rounds of gamma drafts run along the
    target's greedy continuation (each round then adds the target's own next token)."""
    i, rounds, accepted = 0, 0, 0
    n = len(matches)
    while i < n:
        a = 0
        while a < gamma and i + a < n and matches[i + a]:
            a += 1
        rounds += 1
        accepted += a
        i += a + 1
    return accepted / rounds if rounds else 0.0
