"""Greedy identity: each lossless mode's output token ids against cloud-only's, prompt by prompt
and repeat by repeat (``tandem-bench --repeats``: every repeat's answer is checked, against
cloud-only's answer in the same repeat).

Token ids, not text: two different token sequences can decode to one text, and a count of tokens
says nothing of which they are. The edge and vLLM's server both return a choice's output token ids
when asked (``return_token_ids``); a result without them cannot be checked and fails the check.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from clients.bench.measure import RequestResult

REFERENCE = "cloud"  # the mode every lossless mode is held to: the target decoding alone
SHOWN = 6  # token ids shown either side of a first difference


def first_difference(expected: Sequence[int], got: Sequence[int]) -> int | None:
    """The first position where the two sequences differ (the shorter one's length when one is a
    prefix of the other); None when they are equal."""
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return i
    return None if len(expected) == len(got) else min(len(expected), len(got))


def token_difference(expected: Sequence[int], got: Sequence[int]) -> str | None:
    """Where ``got`` parts from ``expected``, in words; None when they are equal."""
    at = first_difference(expected, got)
    if at is None:
        return None
    return (f"token ids differ at position {at} ({len(expected)} expected, {len(got)} got): "
            f"expected {list(expected[at:at + SHOWN])}, got {list(got[at:at + SHOWN])}")


@dataclass(frozen=True)
class Mismatch:
    """A lossless mode's request whose output is not cloud-only's (or cannot be checked)."""

    scenario: str
    prompt_id: int
    mode: str
    reason: str
    expected_text: str
    got_text: str
    repeat: int = 0

    def where(self) -> str:
        return f"{self.scenario} prompt {self.prompt_id} mode {self.mode} (repeat {self.repeat})"

    def describe(self) -> str:
        return (f"{self.where()}: {self.reason}\n"
                f"  cloud: {self.expected_text!r}\n  got:   {self.got_text!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def difference(reference: RequestResult | None, result: RequestResult) -> str | None:
    """Why ``result`` is not the reference's output, in words; None when it is (same token ids,
    as many as its usage counts, and the same text)."""
    if reference is None:
        return f"no {REFERENCE} result to compare with"
    if (why := unusable(reference, REFERENCE) or unusable(result, "this mode")) is not None:
        return why
    if (why := token_difference(reference.token_ids or [], result.token_ids or [])) is not None:
        return why
    if result.text != reference.text:
        return "the same token ids, a different text"
    return None


def unusable(result: RequestResult, who: str) -> str | None:
    """Why ``result``'s token ids cannot be compared: none returned, or not as many as its usage counts."""
    if result.token_ids is None:
        return f"{who} returned no token ids (return_token_ids)"
    if len(result.token_ids) != result.completion_tokens:
        return f"{who} returned {len(result.token_ids)} token ids for {result.completion_tokens} completion tokens"
    return None


def mismatches(results: Sequence[RequestResult], lossless: Collection[str]) -> list[Mismatch]:
    """Every result of a mode in ``lossless`` (the reference's own included) checked against the
    reference's result for the same scenario, prompt and repeat."""
    references = {(r.scenario, r.prompt_id, r.repeat): r for r in results if r.mode == REFERENCE}
    out = []
    for r in results:
        if r.mode not in lossless:
            continue
        ref = references.get((r.scenario, r.prompt_id, r.repeat))
        if (why := difference(ref, r)) is not None:
            out.append(Mismatch(r.scenario, r.prompt_id, r.mode, why, ref.text if ref else "", r.text, r.repeat))
    return out
