"""Constrained decoding: which tokens a grammar allows next, given the output so far.

A ``Constraint`` masks a position's logits (-inf outside the grammar) from the output before
that position alone, like ``verifier.core.logits``: the edge masks its draft logits and the
verifier the target's rows with the same grammar over the same vocabulary, so a round is
verified against the target's *constrained* distribution (exact), and the drafts mostly
pass. A draft token the grammar forbids has target probability 0: it is rejected, and the
rows after it are never read.

The engine is llguidance (maintained; no dependencies; used by vLLM and llama.cpp): JSON
schemas (``response_format``), Lark grammars and regexes, a mask far cheaper than a round
(docs/openai-compat.md, "Grammar engine: llguidance, by measurement", has the measurements and
the comparison with xgrammar and outlines-core).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import llguidance
import numpy as np
import numpy.typing as npt

GrammarKind = Literal["json_schema", "lark", "regex"]
BoolArray = npt.NDArray[np.bool_]


class GrammarError(ValueError):
    """A grammar the engine cannot compile (the message says why)."""


@dataclass(frozen=True)
class GrammarSpec:
    """What a generation's output must match: a JSON schema (as JSON text), a Lark grammar or a
    regex. ``stop_token_ids``: the tokens that may end the output once the grammar is complete."""

    kind: GrammarKind
    text: str
    stop_token_ids: tuple[int, ...]

    @classmethod
    def json_schema(cls, schema: dict[str, Any], stop_token_ids: Sequence[int]) -> GrammarSpec:
        return cls("json_schema", json.dumps(schema, separators=(",", ":"), sort_keys=True),
                   tuple(sorted(stop_token_ids)))

    def grammar(self) -> str:
        """The llguidance grammar; JSON may be laid out freely (whitespace), as in vLLM."""
        if self.kind == "json_schema":
            try:
                return llguidance.LLMatcher.grammar_from_json_schema(self.text, defaults={"whitespace_flexible": True})
            except ValueError as exc:
                raise GrammarError(f"not a JSON schema: {exc}") from exc
        if self.kind == "lark":
            return llguidance.LLMatcher.grammar_from_lark(self.text)
        return llguidance.LLMatcher.grammar_from_regex(self.text)


class Constraint:
    """One generation's grammar state. ``allowed(output)`` brings the matcher to ``output`` (rolling
    back to the longest prefix it shares with what was consumed, then consuming the rest), so
    the callers (a drafter drafting on, a verifier scoring rows and rolling back) never track it."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int) -> None:
        self._matcher = matcher
        self._vocab = vocab_size
        self._consumed: list[int] = []

    def copy(self) -> Constraint:
        """An independent constraint in the same state (for another choice of the same request)."""
        twin = Constraint(self._matcher.deep_copy(), self._vocab)
        twin._consumed = list(self._consumed)
        return twin

    def _sync(self, output: Sequence[int]) -> bool:
        n = len(self._consumed)
        if len(output) >= n and list(output[:n]) == self._consumed:
            common = n  # the usual case, an extension of what was consumed: one comparison in C
        else:
            common = 0
            for a, b in zip(self._consumed, output):
                if a != b:
                    break
                common += 1
        if common < len(self._consumed):
            if not self._matcher.rollback(len(self._consumed) - common):
                self._matcher.reset()
                common = 0
            del self._consumed[common:]
        rest = list(output[common:])
        if rest:
            valid = self._matcher.validate_tokens(rest)  # never consume a token that would break the matcher
            if valid and not self._matcher.consume_tokens(rest[:valid]):
                raise GrammarError(f"grammar engine failed: {self._matcher.get_error()}")
            self._consumed.extend(rest[:valid])
            return valid == len(rest)
        return True

    def allowed(self, output: Sequence[int]) -> BoolArray | None:
        """The tokens allowed after ``output`` [vocab]; None when ``output`` itself breaks the grammar."""
        if not self._sync(output):
            return None
        words = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(words, bitorder="little").astype(bool)
        mask = np.zeros(self._vocab, dtype=bool)
        n = min(self._vocab, bits.size)
        mask[:n] = bits[:n]
        return mask

    def apply_rows(self, rows: npt.NDArray[np.floating[Any]], output: Sequence[int],
                   draft_token_ids: Sequence[int]) -> None:
        """Mask logits rows in place: row i after ``output + draft_token_ids[:i]``. Rows after a
        draft token the grammar forbids are left as they are (that token is rejected first)."""
        for i in range(rows.shape[0]):
            mask = self.allowed([*output, *draft_token_ids[:i]])
            if mask is None:
                return
            rows[i, ~mask[: rows.shape[1]]] = -np.inf


class GrammarCompiler:
    """Grammars to constraints over one vocabulary. ``tokenizer_of(stop_token_ids)`` gives the
    llguidance tokenizer whose end tokens are those (cached per set)."""

    def __init__(self, tokenizer_of: Callable[[tuple[int, ...]], llguidance.LLTokenizer]) -> None:
        self._tokenizer_of = tokenizer_of
        self._tokenizers: dict[tuple[int, ...], llguidance.LLTokenizer] = {}

    @classmethod
    def of_tokenizer_file(cls, path: Path) -> GrammarCompiler:
        """Over a Hugging Face ``tokenizer.json`` (the verifier's model directory has one)."""
        return cls(lambda stops: llguidance.LLTokenizer(str(path), eos_token=list(stops)))

    def tokenizer(self, stop_token_ids: tuple[int, ...]) -> llguidance.LLTokenizer:
        if stop_token_ids not in self._tokenizers:
            self._tokenizers[stop_token_ids] = self._tokenizer_of(stop_token_ids)
        return self._tokenizers[stop_token_ids]

    def compile(self, spec: GrammarSpec) -> Constraint:
        """A fresh constraint (raises GrammarError for a grammar the engine rejects)."""
        tokenizer = self.tokenizer(spec.stop_token_ids)
        grammar = spec.grammar()
        error = llguidance.LLMatcher.validate_grammar(grammar, tokenizer)
        if error:
            raise GrammarError(error)
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        return Constraint(matcher, tokenizer.vocab_size)
