"""The target-model backend interface: the only thing the verifier engine needs from a model.

A backend scores new tokens of many sessions in one call (``score``): each session's tokens
are appended to its KV state and the logits of the rows asked for come back, so a verify
round costs its new tokens, never the whole context, and a batch of rounds from many edges
costs one pass. ``truncate`` rolls a state back after a rejection. Backends are synchronous;
the engine's scheduler runs them off the event loop, one batch at a time.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import GenerateRequest, ModelInfo, SamplingParams, SessionCreate

#: Linear kernels of the torch backend on CPU (``verifier.backends.torch_backend.use_onednn_linear``)
CpuLinear = Literal["auto", "onednn", "torch"]


class Work(NamedTuple):
    """What scoring one item costs a backend, for the pass-time estimator: tokens it computes,
    context it reads from its cache, and rows it computes in requests of their own (vLLM's
    whole rows: one request each, the whole vocabulary shipped; 0 where every row comes out of
    the one pass)."""

    computed: int
    cached: int
    separate_rows: int = 0


class SequenceState(ABC):
    """Opaque per-session KV state owned by a backend."""

    @property
    @abstractmethod
    def length(self) -> int:
        """Tokens currently held in the KV state."""


@dataclass(frozen=True)
class ScoreBatch:
    """The new tokens of many sessions, flat, as in vLLM's spec-decode metadata.

    token_ids: [T] int64, every item's new tokens back to back; offsets: [n+1], item i owns
    token_ids[offsets[i]:offsets[i+1]]; logits_rows[i]: how many trailing rows of logits item
    i needs (the rounds' draft positions plus the bonus position; 0 for a prefill chunk);
    whole_rows[i]: whether those rows must be whole distributions (sampled rounds, logits
    processing, logprobs, grammars) or only their top entries need be real (plain greedy rounds;
    a backend may serve those cheaper). A state appears at most once in a batch.
    """

    states: tuple[SequenceState, ...]
    token_ids: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    logits_rows: tuple[int, ...]
    whole_rows: tuple[bool, ...]

    @classmethod
    def of(cls, items: Sequence[tuple[SequenceState, Sequence[int], int]],
           whole_rows: Sequence[bool] | None = None) -> ScoreBatch:
        """A batch from (state, new token ids, logits rows) triples; every item's rows whole
        unless ``whole_rows`` says otherwise."""
        whole = tuple(whole_rows) if whole_rows is not None else (True,) * len(items)
        if len(whole) != len(items):
            raise ValueError("one whole_rows flag per item")
        states = tuple(s for s, _, _ in items)
        if len({id(s) for s in states}) != len(states):
            raise ValueError("a state may appear only once in a batch")
        for _, tokens, rows in items:
            if not tokens:
                raise ValueError("every item needs at least one new token")
            if not 0 <= rows <= len(tokens):
                raise ValueError("logits rows must be between 0 and the item's new tokens")
        lengths = [len(t) for _, t, _ in items]
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths)
        flat = np.fromiter((t for _, tokens, _ in items for t in tokens), dtype=np.int64, count=int(offsets[-1]))
        return cls(states, flat, offsets, tuple(r for _, _, r in items), whole)

    def __len__(self) -> int:
        return len(self.states)

    def tokens_of(self, i: int) -> npt.NDArray[np.int64]:
        return self.token_ids[self.offsets[i]:self.offsets[i + 1]]


def eos_token_ids(eos: int | list[int] | None) -> list[int]:
    """A model config's ``eos_token_id`` (one id, several, or none) as a list."""
    return list(eos) if isinstance(eos, list) else ([eos] if eos is not None else [])


class TargetBackend(ABC):
    #: ``info.verifies_sampled``: rows asked for whole are whole distributions (logits up to a
    #: constant per row). False: only each row's top entries are real (the rest -inf), enough for
    #: greedy verification.
    info: ModelInfo

    @abstractmethod
    def new_state(self) -> SequenceState: ...

    @abstractmethod
    def score(self, batch: ScoreBatch) -> list[npt.NDArray[np.float32]]:
        """Append each item's tokens to its state; return, per item, logits
        [logits_rows[i], vocab] for its last rows (whole distributions where ``whole_rows[i]``)."""

    @abstractmethod
    def truncate(self, state: SequenceState, length: int) -> None:
        """Drop every cached token at index >= length."""

    def work_of(self, context_tokens: int, new_tokens: int, whole_rows: int = 0) -> Work:
        """What scoring ``new_tokens`` after ``context_tokens`` held ones costs this backend, with
        ``whole_rows`` of their rows asked for as whole distributions. A cache kept token by
        token computes the new tokens only, and its rows are whole anyway."""
        return Work(new_tokens, context_tokens)

    def release(self, state: SequenceState) -> None:  # noqa: B027 - optional hook, no-op by default
        """Free the memory of a state that will not be used again."""

    def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Free the backend itself (engine processes, memory) at shutdown."""


class NativeDecoder(ABC):
    """A backend that also decodes on its own (the cloud-only mode): the engine streams its
    tokens instead of running one-token rounds, so cloud-only costs what the backend's own
    serving costs."""

    def native_refusal(self, sampling: SamplingParams) -> str | None:
        """Why this backend's own decoding cannot serve ``sampling`` (then the engine decodes it by
        rounds), or None."""
        return None

    @abstractmethod
    def decode(self, req: GenerateRequest) -> AsyncGenerator[tuple[list[int], list[TokenLogprob] | None], None]:
        """New token ids of ``req`` as they come, with their logprobs (``req.logprobs`` alternatives
        each) when asked, on the caller's event loop; closing the iterator aborts. ``req.max_tokens``
        is within the target's context (the engine caps it); the output begins at
        ``req.output_index()`` (a resumed generation) and matches ``req.grammar``. Raises
        ``ValueError`` for sampling it cannot honour exactly."""


class LiveHandle(ABC):
    """A session held live inside a backend's own engine (``LiveRoute``): opaque to the engine."""

    @property
    @abstractmethod
    def length(self) -> int:
        """Tokens of the session the backend's engine holds."""


class LiveRoute(ABC):
    """A backend whose own engine verifies a session's rounds inside one live request of it (vLLM's
    speculative decoding, ``verifier.backends.vllm_sessions``): the engine decides acceptance, rolls
    rejected drafts back, and a round costs about one decode step. Sessions it cannot serve this way
    go the whole-row route (``TargetBackend.score``)."""

    @abstractmethod
    def live_refusal(self, req: SessionCreate) -> str | None:
        """Why the session ``req`` opens cannot be served live (the reason, reported), or None when
        it can now. ``req.reproducible``: a seeded sampled output must repeat for the same seed."""

    @abstractmethod
    async def open_live(self, prompt_token_ids: list[int], sampling: SamplingParams) -> LiveHandle:
        """Open a live session over the prompt (its prefill included)."""

    @abstractmethod
    def live_round(self, handle: LiveHandle, last_token: int, drafts: list[int]) -> asyncio.Future[list[int]]:
        """Start one round on the caller's loop: the future resolves with the tokens it commits (the
        accepted drafts, then one token of the target's) and runs to its end whoever waits."""

    @abstractmethod
    def live_fits(self, handle: LiveHandle, new_length: int) -> bool:
        """Whether the session may grow to ``new_length`` tokens on the live route (its KV fits)."""

    @abstractmethod
    def close_live(self, handle: LiveHandle) -> asyncio.Future[None]:
        """End a live session (its KV freed in the backend's engine), after its round in flight."""

    @property
    @abstractmethod
    def live_sessions(self) -> int:
        """Live sessions open now."""
