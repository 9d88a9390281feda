"""The live route's admission and accounting on vLLM (docs/vllm-live-route.md): which sessions
may go live, and the vLLM sequences and KV tokens the live ones hold.

A live session is a paused vLLM request: it holds one of vLLM's ``max_num_seqs`` and its KV
(vLLM never preempts a paused request). Live sessions are admitted up to ``max_num_seqs`` less
``LIVE_RESERVED_SEQS``, and while their KV (each one's length plus a round, in whole blocks)
fits the live route's share of the KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifier.backends.base import LiveHandle
from verifier.backends.vllm_sessions import LiveStream
from verifier.core.protocol import SessionCreate

#: vLLM sequences kept free of live sessions: whole-row rounds, prefills and cloud-only decoding
LIVE_RESERVED_SEQS = 8


@dataclass
class LiveSlot(LiveHandle):
    """A live session on vLLM: its stream, the tokens vLLM holds, the KV tokens reserved for it."""

    stream: LiveStream
    tokens: int
    reserved: int

    @property
    def length(self) -> int:
        return self.tokens


@dataclass(frozen=True)
class LiveLimits:
    """What the live route may hold: sessions (each a paused vLLM request, counted against
    ``max_num_seqs``) and KV tokens (pinned while paused: vLLM never preempts a paused request)."""

    sessions: int
    kv_tokens: int
    block: int
    slots: int  # drafts one step verifies (vLLM's num_speculative_tokens)

    @classmethod
    def of(cls, engine: Any, live_slots: int, live_kv_share: float) -> LiveLimits:
        """The limits on a started vLLM ``AsyncLLM`` (no live session at all without slots)."""
        vllm_config = engine.vllm_config
        block = int(vllm_config.cache_config.block_size)
        seqs = int(vllm_config.scheduler_config.max_num_seqs)
        return cls(sessions=max(0, seqs - LIVE_RESERVED_SEQS) if live_slots else 0,
                   kv_tokens=int(live_kv_share * kv_blocks(engine) * block), block=block, slots=live_slots)

    def need(self, length: int) -> int:
        """KV tokens a session of ``length`` tokens takes through its next round, in whole blocks."""
        return -(-(length + self.slots + 1) // self.block) * self.block


def kv_blocks(engine: Any) -> int:
    """The KV cache blocks vLLM's engine allocated (known once it has started)."""
    blocks = engine.vllm_config.cache_config.num_gpu_blocks
    if not blocks:
        raise RuntimeError("vLLM's engine reports no KV cache blocks")
    return int(blocks)


def live_sampling_refusal(req: SessionCreate) -> str | None:
    """Why the rounds of the session ``req`` opens cannot be verified live by vLLM exactly (None:
    they can). vLLM's spec decoding refuses min_p and logit_bias; penalties and min_tokens would
    count over one chunk's output only; a seeded sampled session keeps Tandem's position-keyed
    draws, which repeat for the same seed however the rounds fall; logprobs and grammars stay on
    the whole-row route."""
    sampling = req.sampling
    if sampling.processing().active or sampling.min_p > 0:
        return "logits processing (penalties, logit_bias, min_p, min_tokens)"
    if sampling.temperature > 0 and req.reproducible:
        return "a seeded sampled session (reproducible draws)"
    if req.logprobs is not None:
        return "logprobs"
    if req.grammar is not None:
        return "a grammar"
    return None


class LiveAdmission:
    """The live sessions open now and the KV tokens each reserves: who may open, who may grow."""

    def __init__(self, limits: LiveLimits) -> None:
        self.limits = limits
        self._open: dict[int, LiveSlot] = {}

    @property
    def count(self) -> int:
        return len(self._open)

    def refusal(self, req: SessionCreate) -> str | None:
        """``LiveRoute.live_refusal``."""
        limits = self.limits
        if not limits.sessions:
            return "the live route is off"
        reason = live_sampling_refusal(req)
        if reason is not None:
            return reason
        prompt_tokens = len(req.prompt_token_ids)
        if prompt_tokens < 2:
            return "a one-token prompt"
        if len(self._open) >= limits.sessions:
            return f"live sessions at their limit ({limits.sessions}: max_num_seqs less {LIVE_RESERVED_SEQS})"
        if self._reserved() + limits.need(prompt_tokens) > limits.kv_tokens:
            return f"live sessions hold the KV cache's share for them ({limits.kv_tokens} tokens)"
        return None

    def _reserved(self) -> int:
        return sum(slot.reserved for slot in self._open.values())

    def admit(self, slot: LiveSlot) -> None:
        """Count a slot as open (before its prefill: admission counts it at once)."""
        self._open[id(slot)] = slot

    def drop(self, slot: LiveSlot) -> None:
        self._open.pop(id(slot), None)

    def fits(self, slot: LiveSlot, new_length: int) -> bool:
        """``LiveRoute.live_fits``: reserves what the slot needs to grow, where the share allows."""
        need = self.limits.need(new_length)
        if need <= slot.reserved:
            return True
        if self._reserved() - slot.reserved + need > self.limits.kv_tokens:
            return False
        slot.reserved = need
        return True
