"""When the edge drafts, sends a round or waits: the pipeline policy, pure.

Stop-and-wait (``vanilla``) is ``max_inflight=1`` without drafting while a round is out;
PicoSpec's asynchronous pipeline keeps drafting on top of unverified tokens while up to
``max_inflight`` rounds are verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from proxy.decoding.speculation import SpeculationState


class Action(Enum):
    DRAFT = "draft"  # draft one more token
    SEND = "send"  # send the next round (possibly empty: one step of plain target decoding)
    WAIT = "wait"  # wait for an answer


@dataclass(frozen=True)
class PipelinePolicy:
    gamma: int  # most draft tokens per round
    max_inflight: int = 1  # rounds in flight at once
    draft_while_waiting: bool = False  # draft on top of rounds in flight (the pipeline)
    max_ahead: int = 64  # most draft tokens beyond the verified ones

    @classmethod
    def stop_and_wait(cls, gamma: int) -> PipelinePolicy:
        return cls(gamma=gamma)

    @classmethod
    def pipelined(cls, gamma: int, max_inflight: int = 3) -> PipelinePolicy:
        return cls(gamma=gamma, max_inflight=max_inflight, draft_while_waiting=True,
                   max_ahead=max(1, gamma) * (max_inflight + 1))

    def next_action(self, state: SpeculationState, can_draft: bool) -> Action:
        """``can_draft``: whether the drafter may add a token to the sequence as it is (room left,
        no stop token drafted, the drafter has a proposal)."""
        room = len(state.inflight) < self.max_inflight
        drafting = self.gamma > 0 and can_draft and state.ahead < self.max_ahead \
            and (not state.inflight or self.draft_while_waiting)
        if room and (state.closed or (state.open and (len(state.open) >= self.gamma or not drafting))):
            return Action.SEND
        if drafting:
            return Action.DRAFT  # (the caller closes the open round once it holds gamma tokens)
        if not state.inflight and not state.closed and not state.open:
            return Action.SEND  # nothing to draft on: a plain decoding step
        return Action.WAIT
