"""Predicted Outputs as drafts: where the output stands in the prediction, what a round holds,
OpenAI's usage counts, and the exactness of one-hot proposals (pure: no model, no server)."""

from __future__ import annotations

import numpy as np
import pytest

from proxy.draft.base import Drafter
from proxy.draft.draws import DraftSampling
from proxy.draft.prediction import (
    PredictionAligner,
    PredictionCounts,
    PredictionDrafter,
    PredictionTrigger,
    one_hot,
)
from proxy.rounds.trigger import DualThresholdTrigger
from tests.stats import chi_square_p
from verifier.core.acceptance import verify_sampled
from verifier.core.codec import DraftToken

PREDICTION = [10, 11, 12, 13, 14, 15, 16, 12, 13, 19]


def test_the_output_is_followed_token_by_token() -> None:
    aligner = PredictionAligner(PREDICTION)
    assert [aligner.next_index(PREDICTION[:n]) for n in range(len(PREDICTION))] == list(range(len(PREDICTION)))
    assert aligner.next_index(PREDICTION) is None  # the prediction is used up


def test_after_an_edit_the_output_rejoins_the_prediction_forward() -> None:
    aligner = PredictionAligner(PREDICTION)
    assert aligner.next_index([10, 11]) == 2
    assert aligner.next_index([10, 11, 50, 51, 52, 53]) is None  # 4 tokens off: no small edit, nothing to propose
    assert aligner.next_index([10, 11, 50, 51, 52, 53, 12]) is None  # one token is no n-gram (min_ngram 2)
    # "12 13" occurs twice (indices 2-3 and 7-8): the first at or after where the output last stood
    assert aligner.next_index([10, 11, 50, 51, 52, 53, 12, 13]) == 4
    assert aligner.next_index([10, 11, 50, 51, 52, 53, 12, 13, 14]) == 5


@pytest.mark.parametrize(("output", "expected"), [
    ([10, 11, 99], 3),  # 12 replaced by 99: 13 comes next
    ([10, 11, 98, 99], 4),  # 12 13 replaced by 98 99
    ([10, 11, 99, 12], 3),  # 99 inserted before 12
    ([10, 11, 13], 4),  # 12 deleted
    ([10, 11, 14], 5),  # 12 13 deleted
    ([99], 1),  # the first token replaced
    ([10, 11, 95, 96, 97, 98], None),  # more than max_edit (3) tokens: no edit assumed
    ([10, 11, 12, 13, 14, 15, 99], 7),  # mid-output, after a run of 4 or more of the prediction
    ([50, 51, 52, 53, 12, 13, 99], None),  # after a pair "12 13" only: text that shares a pair, not an edit
])
def test_a_small_edit_goes_on_with_the_prediction_after_it(output: list[int], expected: int | None) -> None:
    assert PredictionAligner(PREDICTION).next_index(output) == expected


def test_no_edit_is_assumed_with_max_edit_zero() -> None:
    assert PredictionAligner(PREDICTION, max_edit=0).next_index([10, 11, 99]) is None


def test_the_longest_suffix_ngram_wins() -> None:
    aligner = PredictionAligner([1, 2, 3, 7, 5, 2, 3, 4], min_ngram=1)
    assert aligner.next_index([9, 5, 2, 3]) == 7  # "5 2 3" (index 4-6) beats the earlier "2 3"
    assert PredictionAligner([1, 2, 3], min_ngram=1).next_index([8, 8, 3]) is None  # 3 ends it: nothing follows


def test_a_rolled_back_output_is_aligned_again() -> None:
    """Drafting grows the output one token at a time, and a rejection rolls it back: the
    aligner's memory of the last call must never answer for another output."""
    aligner = PredictionAligner(PREDICTION)
    assert aligner.next_index([10, 11, 12]) == 3
    assert aligner.next_index([10, 11, 12, 13]) == 4
    assert aligner.next_index([10, 11, 50]) == 3  # rolled back, then the target's own token: 12 replaced
    assert aligner.next_index([10, 11, 50, 51]) == 4  # 12 13 replaced
    assert aligner.next_index([10, 11, 12]) == 3  # same length as an earlier call, another output
    assert aligner.next_index([10, 11, 12, 13, 14, 15, 16]) == 7


@pytest.mark.parametrize(("prediction", "output", "accepted", "rejected"), [
    ([1, 2, 3, 4], [1, 2, 3, 4], 4, 0),
    ([1, 2, 3, 4], [1, 2, 5, 4], 3, 1),
    ([1, 2, 3, 4, 5, 6], [1, 2, 3], 3, 3),  # longer than the answer
    ([7, 8, 9], [1, 2, 3, 4], 0, 3),  # unrelated
    ([], [1, 2], 0, 0),
])
def test_usage_counts_the_predictions_tokens_found_in_the_completion(prediction: list[int], output: list[int],
                                                                       accepted: int, rejected: int) -> None:
    assert PredictionCounts.of(prediction, output) == PredictionCounts(accepted, rejected)


class Scripted(Drafter):
    """The edge's own drafter, stubbed: always proposes ``token`` (id-only or with a proposal)."""

    def __init__(self, token: int, with_proposal: bool) -> None:
        self.token, self.with_proposal, self.calls = token, with_proposal, 0

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        self.calls += 1
        q = one_hot(self.token) if self.with_proposal else None
        return DraftToken(self.token, q, confidence=0.9 if self.with_proposal else None)

    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        return self.token


GREEDY = DraftSampling(0.0, 1.0, 0, 16)
SAMPLED = DraftSampling(1.0, 1.0, 0, 16)


def test_the_drafter_proposes_the_prediction_then_its_own_drafts() -> None:
    inner = Scripted(77, with_proposal=False)
    drafter = PredictionDrafter(inner, PREDICTION, output_start=2)
    prompt = [1, 2]
    first = drafter.draft(prompt, GREEDY)
    assert first == DraftToken(10, None, predicted=True) and inner.calls == 0
    assert drafter.draft([*prompt, 10, 11], GREEDY) == DraftToken(12, None, predicted=True)
    # up to 3 tokens off the prediction are taken for an edit, and the prediction goes on after them
    assert drafter.draft([*prompt, 10, 11, 50], GREEDY) == DraftToken(13, None, predicted=True)
    assert drafter.draft([*prompt, 10, 11, 50, 51, 52], GREEDY) == DraftToken(15, None, predicted=True)
    assert inner.calls == 0
    own = drafter.draft([*prompt, 10, 11, 50, 51, 52, 53], GREEDY)
    assert own is not None and own.token_id == 77 and not own.predicted and inner.calls == 1


def test_the_output_has_left_the_prediction_when_its_last_tokens_end_no_run_of_it() -> None:
    """Judged on the output: ``lost_after`` tokens (3 here) with none ending a run of 4 of the
    prediction's tokens, whatever pairs it shares with the prediction."""
    drafter = PredictionDrafter(Scripted(77, with_proposal=False), PREDICTION, output_start=2, lost_after=3)
    prompt = [1, 2]
    assert not drafter.lost([*prompt, 50, 51])  # shorter than lost_after: not judged yet
    assert drafter.lost([*prompt, 50, 51, 52])
    assert not drafter.lost([*prompt, 10, 11, 12, 13, 50, 51])  # "10 11 12 13" ends 2 tokens back
    assert drafter.lost([*prompt, 10, 11, 12, 13, 50, 51, 52])
    assert drafter.lost([*prompt, 50, 12, 13, 51, 12, 13, 52])  # pairs of the prediction, no run of 4
    assert not drafter.lost([*prompt, 50, 51, 52, 14, 15, 16, 12])  # rejoined: "14 15 16 12"


def test_the_output_has_rejoined_once_it_repeats_enough_of_the_prediction_with_enough_ahead() -> None:
    """The test mode auto asks of the cloud's output before it goes back to speculation: the
    output's last ``run`` tokens are the prediction's, and ``run`` more of it are still ahead."""
    drafter = PredictionDrafter(Scripted(77, with_proposal=False), [*PREDICTION, 20, 21, 22], output_start=2)
    prompt = [1, 2]
    assert not drafter.rejoined([*prompt, 10, 11, 50, 51], run=2)  # off the prediction
    assert not drafter.rejoined([*prompt, 10, 11, 50, 15], run=2)  # one token: no n-gram to stand on
    assert drafter.rejoined([*prompt, 10, 11, 50, 15, 16], run=2)  # "15 16", 6 tokens ahead
    assert not drafter.rejoined([*prompt, 10, 11, 50, 15, 16], run=3)  # 50 is not 14
    assert drafter.rejoined([*prompt, 10, 11, 50, 14, 15, 16], run=3)
    assert not drafter.rejoined([*prompt, 10, 11, 50, 13, 19, 20, 21], run=3)  # "13 19 20 21": 1 ahead
    assert drafter.rejoined([*prompt, 10, 11, 50, 13, 19, 20, 21], run=1)


def test_sampled_rounds_carry_a_proposal_for_every_token() -> None:
    drafter = PredictionDrafter(Scripted(77, with_proposal=False), PREDICTION, output_start=0)
    predicted = drafter.draft([], SAMPLED)
    assert predicted is not None and predicted.proposal is not None
    assert predicted.proposal.ids.tolist() == [10] and predicted.proposal.probs.tolist() == [1.0]
    own = drafter.draft([55, 56, 57, 58], SAMPLED)  # an id-only draft made one-hot, so a round may mix them
    assert own is not None and own.proposal is not None and own.proposal.ids.tolist() == [77]


def token(predicted: bool, confidence: float | None = None) -> DraftToken:
    return DraftToken(1, None, confidence=confidence, predicted=predicted)


def test_a_round_takes_trusted_prediction_tokens_and_its_own_drafts_as_before() -> None:
    trigger = PredictionTrigger(DualThresholdTrigger(0.5), drafted_per_round=3, longest=32)
    assert trigger.trusted == 6
    assert not trigger.ends_round_before(token(True), [token(True)] * 5)
    assert trigger.ends_round_before(token(True), [token(True)] * 6)
    assert trigger.ends_round_before(token(False, 0.9), [token(True)])  # the prediction was left: send it
    assert trigger.ends_round_before(token(False, 0.9), [token(True), *[token(False, 0.9)] * 3])  # own gamma
    assert trigger.ends_round_before(token(False, 0.4), [token(False, 0.9)])  # the own trigger
    assert not trigger.ends_round_before(token(False, 0.9), [token(True), token(False, 0.9)])
    assert not trigger.ends_round_before(token(True), [token(False, 0.9)])  # the output rejoined it


def test_trust_doubles_while_the_prediction_is_accepted_and_falls_on_a_rejection() -> None:
    trigger = PredictionTrigger(None, drafted_per_round=4, longest=32)
    for expected in (16, 32, 32):
        trigger.learn(trigger.trusted, trigger.trusted)
        assert trigger.trusted == expected
    trigger.learn(32, 5)
    assert trigger.trusted == 10
    trigger.learn(10, 0)
    assert trigger.trusted == 4
    trigger.learn(0, 0)  # a round with no prediction token teaches nothing
    assert trigger.trusted == 4


LAW = np.array([0.5, 0.3, 0.15, 0.05])


def first_token(accepted: int, next_token: int, draft: int) -> int:
    return draft if accepted else next_token


def test_one_hot_proposals_are_exact_through_the_verifiers_sampler() -> None:
    """A prediction token d (one-hot q) through ``verify_sampled``: the first committed token
    follows the target's law; the same check fails on a planted sampler that keeps every
    prediction token (power: the law puts 0.3 on d, the bug 1.0)."""
    rows = np.tile(LAW, (2, 1))
    draws = 1500
    counts = {t: 0 for t in range(4)}
    for seed in range(draws):
        out = verify_sampled([1], [one_hot(1)], rows, seed, 7)
        counts[first_token(out.accepted, out.next_token_id, 1)] += 1
    law = {t: float(LAW[t]) for t in range(4)}
    assert chi_square_p(counts, law) > 1e-3
    kept_always = {0: 0, 1: 200, 2: 0, 3: 0}  # the planted bug's counts over 200 rounds
    assert chi_square_p(kept_always, law) < 1e-6
