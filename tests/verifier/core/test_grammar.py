"""Grammar constraints: masks from the output alone, however the output got there."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.harness import V, letter_grammar_tokenizer
from verifier.core.grammar import GrammarCompiler, GrammarError, GrammarSpec
from verifier.core.models import default_target_dir

LETTERS = GrammarCompiler(letter_grammar_tokenizer)
SPEC = GrammarSpec("regex", "(ab|cd)+e", (0,))  # a=1, b=2, c=3, d=4, e=5; 0 ends


def ids(mask: np.ndarray | None) -> list[int] | None:
    return None if mask is None else np.nonzero(mask)[0].tolist()


def test_masks_follow_the_grammar_and_end_on_the_stop_tokens() -> None:
    c = LETTERS.compile(SPEC)
    assert ids(c.allowed([])) == [1, 3]
    assert ids(c.allowed([1])) == [2]
    assert ids(c.allowed([1, 2])) == [1, 3, 5]
    assert ids(c.allowed([1, 2, 5])) == [0]  # complete: only the end
    assert c.allowed([2]) is None  # an output the grammar forbids


def test_any_order_of_calls_gives_the_masks_of_a_fresh_constraint() -> None:
    """Drafting on, rolling back after a rejection, jumping to another branch: the state follows."""
    outputs = [[1, 2, 3, 4], [1, 2], [3, 4, 1], [1, 2, 1, 2, 5], [], [3], [1, 2, 3, 4, 3]]
    c = LETTERS.compile(SPEC)
    for out in outputs * 2:
        assert ids(c.allowed(out)) == ids(LETTERS.compile(SPEC).allowed(out))
    twin = c.copy()
    assert ids(twin.allowed([3])) == [4] and ids(c.allowed([1])) == [2]


def test_apply_rows_masks_each_position_and_stops_after_a_forbidden_draft() -> None:
    c = LETTERS.compile(SPEC)
    rows = np.zeros((4, V), dtype=np.float32)
    c.apply_rows(rows, [1], [2, 4, 5])  # rows after a, ab, ab+d (forbidden), ...
    assert np.nonzero(np.isfinite(rows[0]))[0].tolist() == [2]
    assert np.nonzero(np.isfinite(rows[1]))[0].tolist() == [1, 3, 5]
    assert np.nonzero(np.isfinite(rows[2]))[0].tolist() == list(range(V))  # after the forbidden d: never read
    assert np.isfinite(rows[3]).all()


def test_bad_grammars_are_grammar_errors() -> None:
    with pytest.raises(GrammarError):
        LETTERS.compile(GrammarSpec("regex", "(ab", (0,)))
    with pytest.raises(GrammarError):
        LETTERS.compile(GrammarSpec("json_schema", "[1, 2]", (0,)))


def test_json_schema_on_the_default_vocabulary() -> None:
    path = default_target_dir() / "tokenizer.json"
    compiler = GrammarCompiler.of_tokenizer_file(path)
    spec = GrammarSpec.json_schema({"type": "object", "properties": {"n": {"type": "integer"}},
                                    "required": ["n"], "additionalProperties": False}, [2])
    c = compiler.compile(spec)
    tok = compiler.tokenizer((2,))
    text = '{"n": 42}'
    out = tok.tokenize_str(text)
    for i in range(len(out)):
        mask = c.allowed(out[:i])
        assert mask is not None and mask[out[i]]
    assert ids(c.allowed(out)) == [2]
    assert json.loads(tok.decode_str(out)) == {"n": 42}
    bad = tok.tokenize_str('{"m": 1}')
    assert c.allowed(bad) is None
