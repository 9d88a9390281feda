"""The llama.cpp drafter keeps its KV cache across rounds and rolls back, never re-evaluating."""

from __future__ import annotations

import numpy as np
import pytest

from proxy.draft.llama_drafter import LlamaDrafter
from verifier.core.controller import AcceptancePredictor
from verifier.core.drafting import ConfidenceTrigger, DraftSampling, PredictorTrigger, confidence
from verifier.core.gguf import load_llama
from verifier.core.models import target_gguf_path

pytestmark = pytest.mark.integration
GREEDY = DraftSampling(0.0, 1.0, 0)


@pytest.fixture(scope="module")
def drafter() -> LlamaDrafter:
    return LlamaDrafter(load_llama(target_gguf_path(), 512, 1))


def test_rounds_evaluate_only_new_tokens(drafter: LlamaDrafter) -> None:
    prompt = list(range(1000, 1040))
    drafts = drafter.propose(prompt, 4, GREEDY)
    assert len(drafts) == 4
    base = drafter.evaluated_tokens
    # the verifier accepted 2 and corrected the 3rd: only the correction is new
    ctx = prompt + [d.token_id for d in drafts[:2]] + [7]
    drafter.propose(ctx, 4, GREEDY)
    # the rollback keeps 40 + 2 cached tokens; the round evaluates the correction + 3 new drafts
    assert drafter.evaluated_tokens - base == 1 + 3


def test_cached_state_gives_the_same_logits_as_a_fresh_start(drafter: LlamaDrafter) -> None:
    ctx = list(range(2000, 2030))
    drafter.sync(ctx + [5, 6, 7])
    rolled = drafter.sync(ctx + [9]).copy()  # roll back 3, evaluate 1
    fresh = LlamaDrafter(load_llama(target_gguf_path(), 512, 1)).sync(ctx + [9])
    assert np.allclose(rolled, fresh, atol=1e-3)


def test_sampled_drafts_carry_their_proposal(drafter: LlamaDrafter) -> None:
    drafts = drafter.propose(list(range(3000, 3010)), 3, DraftSampling(0.8, 0.95, seed=4, proposal_support=8))
    for d in drafts:
        assert d.proposal is not None and d.proposal.prob_of(d.token_id) > 0 and d.proposal.ids.size <= 8


def test_drafting_stops_before_the_first_unconfident_token(drafter: LlamaDrafter) -> None:
    ctx = list(range(1000, 1040))
    full = drafter.propose(ctx, 8, GREEDY)
    sure = [confidence(drafter.sync(ctx + [d.token_id for d in full[:i]])) for i in range(len(full))]
    threshold = float(np.median(sure))
    cut = drafter.propose(ctx, 8, DraftSampling(0.0, 1.0, 0, trigger=ConfidenceTrigger(threshold)))
    expected = next((i for i, c in enumerate(sure) if c < threshold), len(full))
    assert [d.token_id for d in cut] == [d.token_id for d in full[:expected]]
    assert drafter.propose(ctx, 8, DraftSampling(0.0, 1.0, 0, trigger=ConfidenceTrigger(1.0))) == []


def test_the_predictor_trigger_stops_where_its_predicted_acceptance_drops(drafter: LlamaDrafter) -> None:
    """A predictor that looks only at confidence (weight 10, bias -5: p = 0.5 at confidence 0.5)
    cuts exactly where a confidence threshold of 0.5 does."""
    ctx = list(range(2000, 2030))
    by_predictor = drafter.propose(ctx, 8, DraftSampling(0.0, 1.0, 0, trigger=PredictorTrigger(
        AcceptancePredictor((10.0, 0.0, 0.0), -5.0), 0.5)))
    by_threshold = drafter.propose(ctx, 8, DraftSampling(0.0, 1.0, 0, trigger=ConfidenceTrigger(0.5)))
    assert [d.token_id for d in by_predictor] == [d.token_id for d in by_threshold]
    recorded = drafter.propose(ctx, 3, DraftSampling(0.0, 1.0, 0, record_features=True))
    assert all(d.features is not None and 0 < d.features[0] <= 1 for d in recorded)
