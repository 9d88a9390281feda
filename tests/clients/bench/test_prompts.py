"""The shipped category prompt set (``clients/prompts/categories.jsonl``), read as the harnesses read it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from verifier.core.prompts import load_prompts

PROMPTS = Path(__file__).resolve().parents[3] / "clients" / "prompts" / "categories.jsonl"
CATEGORIES = {"conversation", "coding", "math", "summarisation", "translation", "rag"}


def test_every_category_has_four_short_prompts() -> None:
    records = load_prompts(PROMPTS)
    assert Counter(r.category for r in records) == {c: 4 for c in CATEGORIES}
    for r in records:
        assert [m["role"] for m in r.messages] == ["user"]
        assert 0 < len(r.messages[0]["content"].split()) < 120


def test_a_limit_is_balanced_over_the_categories() -> None:
    assert {r.category for r in load_prompts(PROMPTS, 6)} == CATEGORIES
    assert Counter(r.category for r in load_prompts(PROMPTS, 12)) == {c: 2 for c in CATEGORIES}


def test_summarisation_and_rag_prompts_carry_their_passage() -> None:
    for r in load_prompts(PROMPTS):
        text = r.messages[0]["content"]
        if r.category in ("summarisation", "rag"):
            assert len(text.split("\n\n", 1)[1].split()) > 30, text  # the passage after the instruction
        if r.category == "rag":
            assert "Context:" in text and "Question:" in text
