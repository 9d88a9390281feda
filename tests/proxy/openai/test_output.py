"""Committed tokens to client text: stop token, max_tokens, stop strings."""

from __future__ import annotations

from proxy.openai.output import TextEmitter
from tests.harness import EOS, LetterTokenizer


def emitter(max_tokens: int, stop: list[str] | None = None) -> TextEmitter:
    return TextEmitter(LetterTokenizer(), max_tokens, frozenset({EOS}), stop or [])


def test_one_text_per_token_until_max_tokens() -> None:
    e = emitter(3)
    assert e.push([1, 2]) == ["a", "b"] and not e.done
    assert e.push([3, 4, 5]) == ["c"] and e.done and e.finish_reason == "length" and e.produced == 3


def test_a_stop_token_ends_generation_and_is_counted_not_shown() -> None:
    e = emitter(10)
    assert e.push([1, EOS, 2]) == ["a"] and e.done and e.finish_reason == "stop" and e.produced == 2


def test_a_stop_string_across_rounds_is_never_emitted() -> None:
    e = emitter(10, stop=["cd"])
    assert e.push([1, 2, 3]) == ["a", "b"]  # "c" is held: it may start "cd"
    assert e.push([4, 5]) == [] and e.done and e.finish_reason == "stop"
    assert e.finish() == ""


def test_held_text_is_released_at_the_end() -> None:
    e = emitter(2, stop=["cd"])
    assert e.push([2, 3]) == ["b"] and e.done
    assert e.finish() == "c"
