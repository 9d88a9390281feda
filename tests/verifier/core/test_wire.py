"""The channel's frames: compact, strict, and the epoch rule both sides apply."""

from __future__ import annotations

import pytest

from verifier.core.wire import (
    ChannelError,
    Close,
    Failed,
    FrameError,
    Open,
    Round,
    Stale,
    Verified,
    decode_edge_frame,
    decode_verifier_frame,
    encode,
    parts_from_sent,
)


def test_every_frame_round_trips() -> None:
    edge = [Open(sid=1, prompt_token_ids=[1, 2, 3], temperature=0.7, top_p=0.9, seed=5, tpot_ms=100.0),
            Round(sid=1, seq=2, epoch=1, start=7, draft_token_ids=[4, 5], proposal_ids=[[4], [5, 6]],
                  proposal_probs=[[1.0], [0.75, 0.25]]),
            Close(sid=1)]
    for frame in edge:
        assert decode_edge_frame(encode(frame)) == frame
    verifier = [Verified(sid=1, seq=2, accepted=1, next_token_id=9, committed_tokens=9, compute_us=1200, queue_us=3),
                Stale(sid=1, seq=3), Failed(sid=1, seq=0, status=503, code="overloaded", message="busy",
                                             retry_after_ms=1000),
                ChannelError(code="bad_protocol", message="no")]
    for answer in verifier:
        assert decode_verifier_frame(encode(answer)) == answer


def test_greedy_frames_are_a_few_bytes() -> None:
    """A greedy round of 4 draft tokens and its answer: well under the 100 bytes per output
    token the uplink may use."""
    up = encode(Round(sid=3, seq=120, epoch=17, start=1500, draft_token_ids=[504, 2909, 288, 11]))
    down = encode(Verified(sid=3, seq=120, accepted=4, next_token_id=49000, committed_tokens=1505,
                           compute_us=55_000, queue_us=2_000))
    assert len(up) <= 24 and len(down) <= 24


def test_garbage_and_the_wrong_direction_are_frame_errors() -> None:
    for data in (b"", b"\xc1", encode(Stale(sid=1, seq=1)), encode(Close(sid=1)) + b"x"):
        with pytest.raises(FrameError):
            decode_edge_frame(data)
    with pytest.raises(FrameError):
        decode_verifier_frame(encode(Close(sid=1)))
    with pytest.raises(FrameError):  # a wrong type in a field
        decode_edge_frame(encode(Open(sid=1, prompt_token_ids=["x"])))  # type: ignore[list-item]


@pytest.mark.parametrize(("accepted", "drafted", "next_token", "next_sent", "parts"), [
    (2, 4, 9, None, True),  # a rejection
    (2, 4, 9, 9, True),  # a rejection, whatever was sent after it
    (4, 4, 9, None, False),  # all accepted, nothing sent after: the bonus is new
    (4, 4, 9, 9, False),  # all accepted and the next round started with the bonus token
    (4, 4, 9, 8, True),  # all accepted, but the next round was drafted on another token
    (0, 0, 9, None, False),  # a plain decoding step
])
def test_the_epoch_rule(accepted: int, drafted: int, next_token: int, next_sent: int | None, parts: bool) -> None:
    assert parts_from_sent(accepted, drafted, next_token, next_sent) is parts
