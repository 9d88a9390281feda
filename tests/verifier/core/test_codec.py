"""The frame codec: proposals reach the verifier bit-exact (regression: rounding made tiny probs
0); a session's Generation reaches it whole through its Open frame."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from proxy.draft.draws import DraftSampling, draw_draft_token
from verifier.core.codec import DraftToken, decode_proposals, encode_round, open_frame, session_of
from verifier.core.protocol import (
    GenerateRequest,
    Generation,
    GrammarParams,
    SamplingParams,
    SessionCreate,
    SloTargets,
)
from verifier.core.wire import Open, Round, decode_edge_frame, encode


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


def _over_the_wire(gen: Generation, reproducible: bool) -> SessionCreate:
    back = decode_edge_frame(encode(open_frame(7, gen, reproducible)))
    assert isinstance(back, Open) and back.sid == 7
    return session_of(back)


GENERATIONS = {
    "plain": Generation(prompt_token_ids=[1]),
    "sampled, both targets": Generation(prompt_token_ids=[1, 2, 3], sampling=SamplingParams(
        temperature=0.7, top_p=0.9, seed=11), slo=SloTargets(tpot_ms=40.0, ttft_ms=900.0)),
    "tpot only": Generation(prompt_token_ids=[1, 2], slo=SloTargets(tpot_ms=25.5)),
    "ttft only": Generation(prompt_token_ids=[1, 2], slo=SloTargets(ttft_ms=1200.0)),
    "resumed, logprobs 0": Generation(prompt_token_ids=[1, 2, 3, 4], output_start=2, logprobs=0),
    "logprobs 5, a grammar": Generation(prompt_token_ids=[5, 6], logprobs=5, grammar=GrammarParams(
        kind="regex", text="[0-9]+", stop_token_ids=[2])),
    "shaped": Generation(prompt_token_ids=[9, 8, 7], output_start=1, sampling=SamplingParams(
        temperature=1.0, seed=3, top_k=40, min_p=0.05, presence_penalty=0.5, frequency_penalty=-0.25,
        repetition_penalty=1.3, logit_bias={4: -100.0, 17: 2.5}, min_tokens=3, stop_token_ids=[2, 0])),
}


@pytest.mark.parametrize("name", GENERATIONS)
@pytest.mark.parametrize("reproducible", [False, True])
def test_a_generation_reaches_the_verifier_whole_through_its_open_frame(name: str, reproducible: bool) -> None:
    gen = GENERATIONS[name]
    got = _over_the_wire(gen, reproducible)
    assert got == SessionCreate.of(gen, reproducible)
    assert got.model_dump() == {**gen.model_dump(), "reproducible": reproducible}


def test_the_open_frame_writes_none_by_the_wire_conventions() -> None:
    frame = open_frame(1, Generation(prompt_token_ids=[1]))
    assert (frame.tpot_ms, frame.ttft_ms, frame.output_start, frame.logprobs) == (0.0, 0.0, 0, -1)
    assert frame.shaping is None and frame.grammar is None and not frame.reproducible
    only_tpot = open_frame(1, Generation(prompt_token_ids=[1], slo=SloTargets(tpot_ms=30.0)))
    assert (only_tpot.tpot_ms, only_tpot.ttft_ms) == (30.0, 0.0)
    assert session_of(Open(sid=1, prompt_token_ids=[1])).slo is None  # no target: no SLO


def test_an_invalid_open_frame_raises_pydantic_validation_error() -> None:
    with pytest.raises(ValidationError):
        session_of(Open(sid=1, prompt_token_ids=[1, 2], output_start=3))
    with pytest.raises(ValidationError):
        session_of(Open(sid=1, prompt_token_ids=[1], tpot_ms=-5.0))


def test_the_requests_built_from_a_generation_keep_its_fields_and_only_its_own() -> None:
    gen = GENERATIONS["logprobs 5, a grammar"]
    req = GenerateRequest.of(gen, 16, [2])
    assert (req.max_tokens, req.stop_token_ids) == (16, [2])
    assert req.model_dump(exclude={"max_tokens", "stop_token_ids"}) == gen.model_dump()
    assert SessionCreate.of(req) == SessionCreate.of(gen)  # a GenerateRequest's own fields stay behind


def test_an_slo_with_no_target_is_no_slo() -> None:
    assert SloTargets.given(None, None) is None
    assert SloTargets.given(30.0, None) == SloTargets(tpot_ms=30.0)
    assert SloTargets.given(None, 800.0) == SloTargets(ttft_ms=800.0)
