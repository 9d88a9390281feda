"""The "list" prompt source: seed requests, the list prompt and the parsing of its continuation."""

from __future__ import annotations

import json
import re

import numpy as np

from tests.conftest import ROOT
from verifier.distill.prompts import (
    JSON_ASKS,
    SEED_REQUESTS,
    conversation,
    json_request,
    list_request_prompt,
    listed_requests,
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def test_seed_requests_are_not_the_held_out_prompts() -> None:
    held_out = [json.loads(line)["messages"][-1]["content"]
                for name in ("heldout-chat.jsonl", "bench.jsonl")
                for line in (ROOT / "clients" / "prompts" / name).read_text().splitlines() if line.strip()]
    for seed in SEED_REQUESTS:
        for prompt in held_out:
            a, b = _words(seed), _words(prompt)
            assert len(a & b) / len(a | b) <= 0.5, (seed, prompt)
    assert len(set(SEED_REQUESTS)) == len(SEED_REQUESTS) >= 60


def test_list_prompt_starts_a_numbered_list_of_three_distinct_seeds() -> None:
    ask, prefix = list_request_prompt(np.random.default_rng(0))
    assert ask[-1]["role"] == "user" and ask[-1]["content"].startswith("List some ")
    items = prefix.split("\n")
    assert [i[:3] for i in items] == ["1. ", "2. ", "3. ", "4."]
    seeds = [i[3:] for i in items[:3]]
    assert len(set(seeds)) == 3 and all(s in SEED_REQUESTS for s in seeds)
    assert list_request_prompt(np.random.default_rng(0)) == (ask, prefix)


def test_listed_requests_parse_the_continuation() -> None:
    text = (" How do I keep my bike chain clean?\n5. What is a good name for a goldfish?\n"
            "6. How do I keep my bike chain clean?\n7. Why?\n8. Can you explain how tides work?\n9. How can I")
    # duplicates and items under 4 words are dropped; a cut-off continuation loses its last line
    expected = ["How do I keep my bike chain clean?", "What is a good name for a goldfish?",
                "Can you explain how tides work?"]
    assert listed_requests(text, complete=False, most=5) == expected
    assert listed_requests(text, complete=False, most=2) == expected[:2]
    assert listed_requests(text.replace("How can I", "How can I fold a fitted sheet?"), complete=True, most=9) == [
        *expected, "How can I fold a fitted sheet?"]
    # the list ends at the first line that is not an item
    assert listed_requests(" Where do swallows go in winter?\n\nHere is more text", complete=True) == [
        "Where do swallows go in winter?"]
    assert listed_requests(f" {SEED_REQUESTS[0]}\n5. What should I plant in a shady garden?", True) == [
        "What should I plant in a shady garden?"]


def test_json_requests_append_an_ask_for_json_to_the_last_user_turn_only() -> None:
    rng = np.random.default_rng(0)
    chat = conversation("Name a fruit.", "You are a helpful assistant.")
    seen = set()
    for _ in range(200):
        got = json_request(chat, rng)
        assert got[0] == chat[0] and len(got) == len(chat)  # the system turn is untouched
        assert got[-1]["content"].startswith("Name a fruit.")
        ask = got[-1]["content"].removeprefix("Name a fruit.").strip() or None
        assert ask in JSON_ASKS
        seen.add(ask)
    assert seen == set(JSON_ASKS)  # every way of asking, the bare request included
    assert chat[-1]["content"] == "Name a fruit."  # the input is not modified
