"""Committed token ids to client text: stop tokens, max_tokens, stop strings and UTF-8.

``TextEmitter`` sees each committed token once, in order, and says what text may go to the
client now; stop strings are never emitted and a UTF-8 character is never split
(``proxy.openai.textstream``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.decoding.request import Stats
from proxy.openai.textstream import TextStream
from proxy.tokenizer import Tokenizer
from verifier.core.logprobs import TokenLogprob

TokenEntry = tuple[int, TokenLogprob | None]


@dataclass(frozen=True)
class TextDelta:
    text: str
    degraded: bool = False  # produced (in part) by the draft model alone, unverified
    #: when the request asked: (token id, the target's logprob entry) of each token whose text this
    #: delta releases (the entry None for a token the draft model produced alone)
    logprobs: tuple[TokenEntry, ...] = ()
    index: int = 0  # the choice it belongs to (n > 1)


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    stats: Stats
    index: int = 0  # the choice it ends (n > 1)
    cumulative_logprob: float | None = None  # the sum of the output tokens' target logprobs, when computed
    token_ids: tuple[int, ...] | None = None  # the output tokens (those counted), when the request asked

    @property
    def degraded(self) -> bool:
        """The draft model produced some of the output alone (unverified)."""
        return bool(self.stats.get("degraded"))


Event = TextDelta | Finished


@dataclass
class TextEmitter:
    tokenizer: Tokenizer
    max_tokens: int
    stop_token_ids: frozenset[int]
    stop: list[str]
    produced: int = 0
    finish_reason: str = "length"
    done: bool = False
    _stream: TextStream = field(init=False)

    def __post_init__(self) -> None:
        self._stream = TextStream(self.stop)

    def push_one(self, token_id: int) -> tuple[str, bool]:
        """One committed token: the text it releases and whether it is output (False for a
        token past the end, or a stop token, which is never shown)."""
        before = self.produced
        texts = self.push([token_id])
        return "".join(texts), self.produced > before and token_id not in self.stop_token_ids

    def push(self, token_ids: list[int]) -> list[str]:
        """The texts newly committed tokens release, one per token that released any; sets
        ``done`` once generation must end."""
        out: list[str] = []
        for tok in token_ids:
            if self.done or self.produced >= self.max_tokens:
                self.done = True
                break
            self.produced += 1
            if tok in self.stop_token_ids:
                self.finish_reason, self.done = "stop", True
                break
            text = self._stream.push(self.tokenizer.token_bytes([tok]))
            if text:
                out.append(text)
            if self._stream.stopped:
                self.finish_reason, self.done = "stop", True
                break
        if self.produced >= self.max_tokens:
            self.done = True
        return out

    def finish(self) -> str:
        """What was held back (a partial stop string that never completed, a partial character)."""
        return self._stream.finish()
