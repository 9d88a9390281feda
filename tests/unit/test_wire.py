"""The edge's proposals reach the verifier bit-exact (regression: rounding made tiny probs 0)."""

from __future__ import annotations

import numpy as np

from proxy.draft.base import DraftSampling, choose_from_logits
from proxy.verifier_client import verify_request
from verifier.protocol import VerifyRequest
from verifier.sampling import SparseDist


def test_proposals_round_trip_exactly_including_tiny_probabilities() -> None:
    logits = np.zeros(100)
    logits[3] = 30.0  # a very peaked distribution: the tail probabilities are ~1e-13
    logits[7] = 5.0
    token = choose_from_logits(logits, DraftSampling(1.0, 1.0, seed=5, proposal_support=16), position=9)
    assert token.proposal is not None and token.proposal.probs.min() < 1e-10
    wire = verify_request(1, [token]).model_dump_json(exclude_none=True)
    back = VerifyRequest.model_validate_json(wire)
    assert back.proposals is not None
    got = SparseDist(np.asarray(back.proposals[0].ids), np.asarray(back.proposals[0].probs))
    assert np.array_equal(got.ids, token.proposal.ids)
    assert np.array_equal(got.probs, token.proposal.probs)  # bit-exact
    got.validate(100)


def test_greedy_rounds_send_ids_only() -> None:
    token = choose_from_logits(np.arange(10.0), DraftSampling(0.0, 1.0, seed=0), position=0)
    assert token.token_id == 9 and token.proposal is None
    assert "proposals" not in verify_request(2, [token]).model_dump_json(exclude_none=True)
