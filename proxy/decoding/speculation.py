"""The edge's speculation state for one session: pure, no I/O, no drafter, no clock.

It holds the sequence the edge works on: the verified tokens, then draft tokens sent in
rounds still in flight, then draft tokens not sent yet (split into rounds to send). Answers
from the verifier (``Verified``/``Stale`` frames of ``verifier.core.wire``) are applied in
round order; applying one returns the tokens it verified, which are the only tokens a client
ever sees, in order and once. On a rejection (or a bonus token that differs from what was
drafted at its position) the drafts after it are dropped, the epoch advances by the rule the
verifier applies too (``parts_from_sent``), and rounds still in flight are expected back
``Stale``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from verifier.core.codec import DraftToken, SentRound
from verifier.core.wire import Stale, Verified, parts_from_sent


class ProtocolViolation(RuntimeError):
    """An answer that cannot follow what was sent (a verifier bug or a mixed-up connection)."""


@dataclass
class Applied:
    """What one answer did: tokens it verified, and whether it was a stale round's."""

    verified: list[int]
    stale: bool = False
    accepted: int = 0
    drafted: int = 0
    round: SentRound | None = None


@dataclass
class SpeculationState:
    """``tokens[:verified_end]`` are verified; ``tokens[verified_end:sent_end]`` were sent in rounds in
    flight (``inflight``, oldest first); the rest are unsent draft tokens, grouped into
    ``closed`` rounds ready to send and one ``open`` round still being drafted."""

    tokens: list[int]
    verified_end: int = 0
    sent_end: int = 0
    epoch: int = 0
    inflight: deque[SentRound] = field(default_factory=deque)
    closed: deque[list[DraftToken]] = field(default_factory=deque)
    open: list[DraftToken] = field(default_factory=list)
    next_seq: int = 1
    made: int = 0  # draft tokens drafted
    used: int = 0  # draft tokens that became verified output

    @classmethod
    def start(cls, prompt_token_ids: list[int]) -> SpeculationState:
        n = len(prompt_token_ids)
        return cls(tokens=list(prompt_token_ids), verified_end=n, sent_end=n)

    # ---- drafting ---------------------------------------------------------------------------
    @property
    def unsent(self) -> int:
        return len(self.tokens) - self.sent_end

    @property
    def ahead(self) -> int:
        """Draft tokens beyond the verified ones (sent or not)."""
        return len(self.tokens) - self.verified_end

    def add_draft(self, token: DraftToken, new_round: bool = False) -> None:
        """Append a draft token; ``new_round``: close the open round first (the token starts the next)."""
        if new_round and self.open:
            self.close_round()
        self.open.append(token)
        self.tokens.append(token.token_id)
        self.made += 1

    def close_round(self) -> None:
        """Make the open round ready to send (an empty one is not kept)."""
        if self.open:
            self.closed.append(self.open)
            self.open = []

    def take_round(self, allow_empty: bool = False) -> SentRound | None:
        """The next round to send, now counted in flight: the oldest closed round, else the open one;
        an empty round (one step of plain target decoding) only when ``allow_empty`` and nothing is
        in flight."""
        if self.closed:
            drafts = self.closed.popleft()
        elif self.open or (allow_empty and not self.inflight):
            drafts, self.open = self.open, []
        else:
            return None
        sent = SentRound(self.next_seq, self.epoch, self.sent_end, drafts)
        self.next_seq += 1
        self.sent_end += len(drafts)
        self.inflight.append(sent)
        return sent

    # ---- answers ----------------------------------------------------------------------------
    def apply(self, answer: Verified | Stale) -> Applied:
        """Apply the answer to the oldest round in flight (answers come in round order)."""
        if not self.inflight or self.inflight[0].seq != answer.seq:
            expected = self.inflight[0].seq if self.inflight else None
            raise ProtocolViolation(f"answer for round {answer.seq}; expected round {expected}")
        head = self.inflight.popleft()
        if isinstance(answer, Stale):
            if head.epoch >= self.epoch:
                raise ProtocolViolation(f"round {head.seq} answered stale but its epoch {head.epoch} is current")
            return Applied([], stale=True, round=head)
        if head.epoch != self.epoch:
            raise ProtocolViolation(f"round {head.seq} of epoch {head.epoch} verified in epoch {self.epoch}")
        k = len(head.drafts)
        pos = head.start + answer.accepted
        if not 0 <= answer.accepted <= k or answer.committed_tokens != pos + 1 or pos < self.verified_end:
            raise ProtocolViolation(f"round {head.seq}: accepted {answer.accepted} of {k} from {head.start}, "
                                    f"{answer.committed_tokens} committed, {self.verified_end} verified before")
        following = self.inflight[0] if self.inflight else None
        next_sent = following.drafts[0].token_id if following and following.start == pos and following.drafts \
            else None
        if parts_from_sent(answer.accepted, k, answer.next_token_id, next_sent):
            self.epoch += 1
        before = self.verified_end
        if answer.accepted == k and pos < len(self.tokens) and self.tokens[pos] == answer.next_token_id:
            self.used += int(pos < self.sent_end)  # a sent draft (its round's answer will count it again)
            self._verify_through(pos + 1)  # the bonus token is what was drafted there: keep what follows
        else:
            self._replace_from(pos, answer.next_token_id)
        self.used += answer.accepted - max(0, before - head.start)  # drafts verified now (not the overlap)
        return Applied(self.tokens[before:self.verified_end], accepted=answer.accepted, drafted=k, round=head)

    def _verify_through(self, end: int) -> None:
        """The tokens up to ``end`` are verified; unsent drafts among them leave the unsent rounds."""
        if end > self.sent_end:
            drop = end - self.sent_end
            self.used += drop
            while drop:
                batch = self.closed[0] if self.closed else self.open
                n = min(drop, len(batch))
                del batch[:n]
                drop -= n
                if self.closed and not self.closed[0]:
                    self.closed.popleft()
            self.sent_end = end
        self.verified_end = end

    def _replace_from(self, pos: int, token: int) -> None:
        """The verified token at ``pos`` differs from the draft: every draft from there is dropped."""
        del self.tokens[pos:]
        self.tokens.append(token)
        self.verified_end = self.sent_end = pos + 1
        self.closed.clear()
        self.open = []
