"""Analytic throughput bounds (REFERENCES.md), pure: what a mode could reach at best with
the measured acceptance and timings. The report prints measured / bound."""

from __future__ import annotations


def per_token_alpha(accepted: int, rejections: int) -> float:
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
    return (1.0 - alpha ** (gamma + 1.0)) / (1.0 - alpha)


def stop_and_wait_tokens_per_s(alpha: float, gamma: float, t_draft_s: float, rtt_s: float, t_verify_s: float) -> float:
    """Vanilla distributed SD: a round costs gamma drafts + RTT + one verification."""
    return expected_tokens_per_round(alpha, gamma) / (gamma * t_draft_s + rtt_s + t_verify_s)


def pipelined_tokens_per_s(alpha: float, gamma: float, t_draft_s: float, rtt_s: float, t_verify_s: float) -> float:
    """PicoSpec's asynchronous pipeline: E[T] = a^g max(Td, RTT+Tv) + (1 - a^g)(Td + RTT + Tv)."""
    td = gamma * t_draft_s
    both = td + rtt_s + t_verify_s
    t = alpha**gamma * max(td, rtt_s + t_verify_s) + (1 - alpha**gamma) * both
    return expected_tokens_per_round(alpha, gamma) / t


def cloud_tokens_per_s(n_tokens: int, t_step_s: float, rtt_s: float) -> float:
    """Autoregressive decoding in the cloud, streamed: one RTT, then one target step a token."""
    return n_tokens / (rtt_s + n_tokens * t_step_s)


def edge_tokens_per_s(t_draft_s: float) -> float:
    return 1.0 / t_draft_s if t_draft_s > 0 else 0.0
