"""Acceptance estimators and analytic throughput bounds (docs/references.md), pure.

What a mode could reach at best with the measured acceptance and timings; the benchmark
report prints measured / bound, and the distillation tool scores drafts with the same
estimators. Words as defined in docs/architecture.md#glossary.
"""

from __future__ import annotations

from collections.abc import Sequence


def per_token_alpha(accepted: float, rejections: float) -> float:
    """Per-token acceptance probability from rounds truncated at the first rejection:
    accepted / (accepted + rejections), the maximum-likelihood estimate of a geometric
    acceptance process. (accepted / drafted is biased low: it counts the tokens drafted
    after a rejection, which were never tested, as failures.)"""
    total = accepted + rejections
    return accepted / total if total else 0.0


def expected_tokens_per_round(alpha: float, gamma: float) -> float:
    """(1 - alpha^(gamma+1)) / (1 - alpha), the i.i.d. model of Leviathan et al."""
    if alpha >= 1.0:
        return gamma + 1.0
    return (1.0 - float(alpha ** (gamma + 1.0))) / (1.0 - alpha)


def stop_and_wait_tokens_per_s(alpha: float, gamma: float, t_draft_s: float, rtt_s: float, t_verify_s: float) -> float:
    """Vanilla distributed SD: a round costs gamma drafts + RTT + one verification."""
    return expected_tokens_per_round(alpha, gamma) / (gamma * t_draft_s + rtt_s + t_verify_s)


def pipelined_tokens_per_s(alpha: float, gamma: float, t_draft_s: float, rtt_s: float, t_verify_s: float,
                           inflight: int = 1) -> float:
    """PicoSpec's asynchronous pipeline with up to ``inflight`` rounds in flight. A round whose
    drafts are all accepted costs the pipeline's period, max(Td, Tv, (RTT + Tv) / inflight): the
    edge drafts the next rounds while it is out, the verifier scores a session's rounds one after
    the other, and at most ``inflight`` round trips overlap. A rejection empties the pipeline: the
    next round costs Td + RTT + Tv. So E[T] = a^g period + (1 - a^g)(Td + RTT + Tv); with one
    round in flight this is PicoSpec's bound, E[T] = a^g max(Td, RTT+Tv) + (1 - a^g)(Td + RTT + Tv)."""
    td = gamma * t_draft_s
    both = td + rtt_s + t_verify_s
    period = max(td, t_verify_s, (rtt_s + t_verify_s) / max(1, inflight))
    all_accepted = float(alpha**gamma)
    t = all_accepted * period + (1 - all_accepted) * both
    return expected_tokens_per_round(alpha, gamma) / t


def started_tokens_per_s(n_tokens: int, steady_tokens_per_s: float, start_s: float) -> float:
    """``n_tokens`` at a steady rate after ``start_s`` seconds in which none come."""
    if steady_tokens_per_s <= 0:
        return 0.0
    return n_tokens / (start_s + n_tokens / steady_tokens_per_s)


def cloud_tokens_per_s(n_tokens: int, t_step_s: float, rtt_s: float) -> float:
    """Autoregressive decoding in the cloud, streamed: one RTT, then one target step a token."""
    return n_tokens / (rtt_s + n_tokens * t_step_s)


def edge_tokens_per_s(t_draft_s: float) -> float:
    return 1.0 / t_draft_s if t_draft_s > 0 else 0.0


def greedy_matches(draft_argmax: Sequence[int], continuation: Sequence[int]) -> list[bool]:
    """Per position: does the draft's argmax equal the token the target produced there?"""
    if len(draft_argmax) != len(continuation):
        raise ValueError("one draft prediction per continuation token is required")
    return [int(a) == int(b) for a, b in zip(draft_argmax, continuation, strict=True)]


def mean_accepted_length(matches: Sequence[bool], gamma: int) -> float:
    """Mean draft tokens accepted per round when rounds of gamma draft tokens run along the
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
