"""The round codec: proposals reach the verifier bit-exact (regression: rounding made tiny probs 0)."""

from __future__ import annotations

import numpy as np
import pytest

from verifier.core.codec import decode_proposals, encode_round
from verifier.core.drafting import DraftSampling, DraftToken, draw_draft_token
from verifier.core.protocol import VerifyRequest


def test_proposals_round_trip_exactly_including_tiny_probabilities() -> None:
    logits = np.zeros(100)
    logits[3] = 30.0  # a very peaked distribution: the tail probabilities are ~1e-13
    logits[7] = 5.0
    token = draw_draft_token(logits, DraftSampling(1.0, 1.0, seed=5, proposal_support=16), position=9)
    assert token.proposal is not None and token.proposal.probs.min() < 1e-10
    wire = encode_round(1, [token]).model_dump_json(exclude_none=True)
    back = VerifyRequest.model_validate_json(wire)
    decoded = decode_proposals(back)
    assert decoded is not None
    got = decoded[0]
    assert np.array_equal(got.ids, token.proposal.ids)
    assert np.array_equal(got.probs, token.proposal.probs)  # bit-exact
    got.validate(100)


def test_greedy_rounds_send_ids_only() -> None:
    token = draw_draft_token(np.arange(10.0), DraftSampling(0.0, 1.0, seed=0), position=0)
    assert token.token_id == 9 and token.proposal is None
    assert "proposals" not in encode_round(2, [token]).model_dump_json(exclude_none=True)


def test_a_round_mixing_sampled_and_id_only_tokens_is_refused() -> None:
    sampled = draw_draft_token(np.arange(10.0), DraftSampling(1.0, 1.0, seed=0), position=0)
    with pytest.raises(ValueError):
        encode_round(1, [sampled, DraftToken(3, None)])
