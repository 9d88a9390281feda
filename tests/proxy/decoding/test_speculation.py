"""The edge's speculation state and pipeline policy (pure), and a property test of the whole
pipelined loop against the real verifier engine in memory: random rejection patterns, draft
lengths, pipeline depths, jitter and reordered answers; no token lost, duplicated or reordered."""

from __future__ import annotations

import asyncio
import random

import pytest

from proxy.decoding.pipeline import Action, PipelinePolicy
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.decoding.speculation import ProtocolViolation, SpeculationState
from proxy.decoding.speculative import speculative_loop
from tests.harness import EOS, LinkFaults, greedy_continuation, start
from verifier.core.codec import DraftToken
from verifier.core.protocol import Generation
from verifier.core.wire import Stale, Verified


def tok(t: int) -> DraftToken:
    return DraftToken(t, None)


def verified(seq: int, accepted: int, next_token: int, committed: int) -> Verified:
    return Verified(sid=1, seq=seq, accepted=accepted, next_token_id=next_token, committed_tokens=committed,
                    compute_us=0, queue_us=0)


def drafted(state: SpeculationState, *tokens: int) -> None:
    for t in tokens:
        state.add_draft(tok(t))


def test_a_rejection_drops_later_drafts_and_makes_rounds_in_flight_stale() -> None:
    s = SpeculationState.start([1, 2])
    drafted(s, 3, 4, 5)
    r1 = s.take_round()
    drafted(s, 6, 7)
    r2 = s.take_round()
    drafted(s, 8)  # unsent
    assert r1 is not None and r2 is not None and (r1.start, r2.start, s.ahead, s.unsent) == (2, 5, 6, 1)
    applied = s.apply(verified(1, 1, 9, 4))  # 3 accepted, 4 rejected, 9 instead
    assert applied.verified == [3, 9] and s.tokens == [1, 2, 3, 9] and s.epoch == 1
    assert (s.verified_end, s.sent_end, s.unsent, s.open) == (4, 4, 0, [])
    assert s.apply(Stale(sid=1, seq=2)).stale and not s.inflight
    with pytest.raises(ProtocolViolation):  # nothing is in flight any more
        s.apply(Stale(sid=1, seq=3))


def test_a_bonus_token_equal_to_the_next_sent_draft_keeps_the_pipeline() -> None:
    s = SpeculationState.start([1])
    drafted(s, 2, 3)
    s.take_round()
    drafted(s, 4, 5)
    s.take_round()
    assert s.apply(verified(1, 2, 4, 4)).verified == [2, 3, 4]  # bonus 4 == the next round's first draft
    assert s.epoch == 0 and len(s.inflight) == 1 and s.tokens == [1, 2, 3, 4, 5]
    # the verifier checks the overlapping draft against the bonus and counts it accepted
    assert s.apply(verified(2, 2, 6, 6)).verified == [5, 6]
    assert s.tokens == [1, 2, 3, 4, 5, 6] and s.made == 4 and s.used == 4


def test_a_bonus_token_unlike_the_next_sent_draft_starts_a_new_epoch() -> None:
    s = SpeculationState.start([1])
    drafted(s, 2, 3)
    s.take_round()
    drafted(s, 4, 5)
    s.take_round()
    assert s.apply(verified(1, 2, 7, 4)).verified == [2, 3, 7]
    assert s.epoch == 1 and s.tokens == [1, 2, 3, 7]
    assert s.apply(Stale(sid=1, seq=2)).stale


def test_a_bonus_token_unlike_an_unsent_draft_drops_it_without_a_new_epoch() -> None:
    s = SpeculationState.start([1])
    drafted(s, 2)
    s.take_round()
    drafted(s, 5, 6)  # unsent
    assert s.apply(verified(1, 1, 3, 3)).verified == [2, 3]
    assert s.epoch == 0 and s.tokens == [1, 2, 3] and s.unsent == 0
    drafted(s, 4)
    s.close_round()
    drafted(s, 5)
    s.take_round()  # the closed round goes first
    assert s.apply(verified(2, 1, 5, 5)).verified == [4, 5]  # the bonus equals the unsent 5: consumed
    assert (s.verified_end, s.sent_end, s.unsent, s.open) == (5, 5, 0, [])


def test_answers_that_cannot_follow_what_was_sent_are_protocol_violations() -> None:
    s = SpeculationState.start([1])
    drafted(s, 2, 3)
    s.take_round()
    with pytest.raises(ProtocolViolation):
        s.apply(Stale(sid=1, seq=1))  # a current round cannot be stale
    for bad in (verified(2, 0, 5, 2), verified(1, 3, 5, 5), verified(1, 1, 5, 9)):
        t = SpeculationState.start([1])
        drafted(t, 2, 3)
        t.take_round()
        with pytest.raises(ProtocolViolation):
            t.apply(bad)


def test_empty_rounds_only_with_nothing_in_flight() -> None:
    s = SpeculationState.start([1])
    assert s.take_round() is None
    empty = s.take_round(allow_empty=True)
    assert empty is not None and empty.drafts == [] and s.take_round(allow_empty=True) is None


def test_stop_and_wait_drafts_a_round_sends_it_and_waits() -> None:
    policy = PipelinePolicy.stop_and_wait(gamma=2)
    s = SpeculationState.start([1])
    assert policy.next_action(s, can_draft=True) is Action.DRAFT
    drafted(s, 2)
    assert policy.next_action(s, can_draft=True) is Action.DRAFT
    drafted(s, 3)
    s.close_round()
    assert policy.next_action(s, can_draft=True) is Action.SEND
    s.take_round()
    assert policy.next_action(s, can_draft=True) is Action.WAIT  # no drafting while a round is out
    s.apply(verified(1, 2, 4, 4))
    assert policy.next_action(s, can_draft=False) is Action.SEND  # nothing to draft on: a plain step


def test_the_pipeline_drafts_while_rounds_are_out_up_to_its_depth() -> None:
    policy = PipelinePolicy.pipelined(gamma=2, max_inflight=2)
    s = SpeculationState.start([1])
    for round_ in range(2):
        drafted(s, 10 + 2 * round_, 11 + 2 * round_)
        s.close_round()
        assert policy.next_action(s, can_draft=True) is Action.SEND
        s.take_round()
        assert policy.next_action(s, can_draft=True) is Action.DRAFT  # keeps drafting on unverified tokens
    drafted(s, 20)
    assert policy.next_action(s, can_draft=True) is Action.DRAFT  # two out: the third waits, drafting goes on
    drafted(s, 21)
    s.close_round()
    assert s.ahead == policy.max_ahead and policy.next_action(s, can_draft=True) is Action.WAIT
    drafted_partial = SpeculationState.start([1])
    drafted(drafted_partial, 5)
    assert policy.next_action(drafted_partial, can_draft=False) is Action.SEND  # no more drafts: send what is there


@pytest.mark.parametrize("case", range(24))
def test_random_rejections_depths_and_links_never_lose_duplicate_or_reorder_a_token(case: int) -> None:
    rng = random.Random(case)
    wrong = {p for p in range(200) if rng.random() < rng.choice((0.05, 0.2, 0.5))}
    gamma = rng.randint(1, 6)
    depth = rng.randint(1, 4)
    faults = LinkFaults(jitter_s=rng.choice((0.0, 0.002)), reorder=rng.random() < 0.5, seed=case)
    policy = PipelinePolicy.pipelined(gamma, depth) if rng.random() < 0.8 else PipelinePolicy.stop_and_wait(gamma)
    max_tokens = rng.randint(1, 60)

    async def body() -> None:
        h = await start(faults=faults)
        h.drafters[0].wrong = lambda p: p in wrong
        stats = GenerationStats(mode="speculative")
        req = GenerationRequest(Generation(prompt_token_ids=[7, 3]), max_tokens=max_tokens,
                                stop_token_ids=frozenset({EOS}), policy=policy)
        out: list[int] = []
        loop = speculative_loop(req, h.drafters[0], h.ctx(), stats)
        try:
            async for new in loop:
                out.extend(new)
                if len(out) >= max_tokens:
                    break
        finally:
            await loop.aclose()
        assert out[:max_tokens] == greedy_continuation(3, max_tokens)
        assert len(out) <= max_tokens + gamma + 1  # nothing verified far past the budget
        assert stats.accepted <= stats.drafted and stats.wasted >= 0
        await h.aclose()

    asyncio.run(body())
