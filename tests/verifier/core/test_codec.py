"""The round codec: proposals reach the verifier bit-exact (regression: rounding made tiny probs 0)."""

from __future__ import annotations

import numpy as np
import pytest

from proxy.draft.draws import DraftSampling, draw_draft_token
from verifier.core.codec import DraftToken, decode_proposals, encode_round
from verifier.core.wire import Round, decode_edge_frame, encode


def test_proposals_round_trip_exactly_including_tiny_probabilities() -> None:
    logits = np.zeros(100)
    logits[3] = 30.0  # a very peaked distribution: the tail probabilities are ~1e-13
    logits[7] = 5.0
    token = draw_draft_token(logits, DraftSampling(1.0, 1.0, seed=5, proposal_support=16), position=9)
    assert token.proposal is not None and token.proposal.probs.min() < 1e-10
    back = decode_edge_frame(encode(encode_round(3, 1, 0, 9, [token])))
    assert isinstance(back, Round)
    decoded = decode_proposals(back)
    assert decoded is not None
    got = decoded[0]
    assert np.array_equal(got.ids, token.proposal.ids)
    assert np.array_equal(got.probs, token.proposal.probs)  # bit-exact
    got.validate(100)


def test_greedy_rounds_send_ids_only() -> None:
    token = draw_draft_token(np.arange(10.0), DraftSampling(0.0, 1.0, seed=0), position=0)
    assert token.token_id == 9 and token.proposal is None
    frame = encode_round(1, 2, 0, 5, [token])
    assert frame.proposal_ids is None and frame.proposal_probs is None
    assert len(encode(frame)) <= 12  # [tag, sid, seq, epoch, start, [id], nil, nil]


def test_a_round_mixing_sampled_and_id_only_tokens_is_refused() -> None:
    sampled = draw_draft_token(np.arange(10.0), DraftSampling(1.0, 1.0, seed=0), position=0)
    with pytest.raises(ValueError):
        encode_round(1, 1, 0, 1, [sampled, DraftToken(3, None)])


def test_ids_and_probs_of_proposals_must_pair_up() -> None:
    with pytest.raises(ValueError):
        decode_proposals(Round(sid=1, seq=1, epoch=0, start=1, draft_token_ids=[2], proposal_ids=[[2]]))
    with pytest.raises(ValueError):
        decode_proposals(Round(sid=1, seq=1, epoch=0, start=1, draft_token_ids=[2], proposal_ids=[[2], [3]],
                               proposal_probs=[[1.0]]))
