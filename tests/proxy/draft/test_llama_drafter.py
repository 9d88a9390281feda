"""The llama.cpp drafter keeps its KV cache across rounds and rolls back, never re-evaluating."""

from __future__ import annotations

import numpy as np
import pytest

from proxy.draft.draws import DraftSampling, confidence
from proxy.draft.llama_drafter import LlamaDrafter
from verifier.core.codec import DraftToken
from verifier.core.gguf import load_llama
from verifier.core.models import target_gguf_path

pytestmark = pytest.mark.integration
GREEDY = DraftSampling(0.0, 1.0, 0)


@pytest.fixture(scope="module")
def drafter() -> LlamaDrafter:
    return LlamaDrafter(load_llama(target_gguf_path(), 512, 1))


def draft_n(drafter: LlamaDrafter, ctx: list[int], n: int, sampling: DraftSampling) -> list[DraftToken]:
    out: list[DraftToken] = []
    for _ in range(n):
        token = drafter.draft(ctx + [d.token_id for d in out], sampling)
        assert token is not None
        out.append(token)
    return out


def test_rounds_evaluate_only_new_tokens(drafter: LlamaDrafter) -> None:
    prompt = list(range(1000, 1040))
    drafts = draft_n(drafter, prompt, 4, GREEDY)
    base = drafter.evaluated_tokens
    # the verifier accepted 2 and corrected the 3rd: only the correction is new
    ctx = prompt + [d.token_id for d in drafts[:2]] + [7]
    draft_n(drafter, ctx, 4, GREEDY)
    # the rollback keeps 40 + 2 cached tokens; drafting evaluates the correction + 3 new drafts
    assert drafter.evaluated_tokens - base == 1 + 3


def fresh_drafter() -> LlamaDrafter:
    return LlamaDrafter(load_llama(target_gguf_path(), 512, 1))


def test_a_roll_back_leaves_exactly_the_state_that_never_saw_the_rolled_back_tokens(drafter: LlamaDrafter) -> None:
    ctx = list(range(2000, 2030))
    drafter.sync(ctx + [5, 6, 7])
    rolled = drafter.sync(ctx + [9]).copy()  # roll back 3, evaluate 1
    never = fresh_drafter()
    never.sync(ctx)
    assert np.array_equal(rolled, never.sync(ctx + [9]))  # the same evaluations, no roll-back


def test_rows_of_a_batch_do_not_depend_on_the_batchs_size_from_two_on() -> None:
    """What llama.cpp's CPU kernels give: a position's logits are the same in a batch of 31 as in
    one of 2; evaluated alone they differ (by up to ~1 on AVX2), which is why a request starts
    from batched positions only (the next test)."""
    ctx = list(range(2000, 2031))
    whole = fresh_drafter().sync(ctx).copy()
    split = fresh_drafter()
    split.sync(ctx[:29])
    split.begin()  # a new request may reuse the 29 batched positions and evaluates the last 2 together
    assert np.array_equal(whole, split.sync(ctx))
    assert split.evaluated_tokens == 29 + 2


@pytest.mark.parametrize("lost", [3, 12])  # drafts in the lost round: more than the kept ends (8) too
def test_a_round_drafted_again_after_a_lost_verifier_gets_the_same_logits(drafter: LlamaDrafter, lost: int) -> None:
    """A round whose drafts were all accepted ends with the last draft and the bonus token
    evaluated together (a batch of 2). When the next round is lost and drafted again from the same
    context, its first logits are those of that batch, not of the bonus evaluated alone (which
    differ on these CPU kernels): the resumed request drafts what the uninterrupted one drafted."""
    prompt = list(range(1300, 1340))
    drafter.begin()
    drafts = [d.token_id for d in draft_n(drafter, prompt, 4, GREEDY)]
    context = prompt + drafts + [11]  # all 4 accepted, bonus 11: the 4th draft and 11 are new to the cache
    first = drafter.sync(context).copy()
    evaluated = drafter.evaluated_tokens
    draft_n(drafter, context, lost, GREEDY)  # the next round, then the verifier is lost
    again = drafter.sync(context)  # the round drafted again on the new verifier: nothing evaluated again
    assert np.array_equal(again, first) and drafter.evaluated_tokens == evaluated + lost - 1


def test_a_request_on_a_used_drafter_gets_what_a_fresh_drafter_gives(drafter: LlamaDrafter) -> None:
    """Seeded sampled requests stay reproducible on any draft slot: after a request that drafted
    one token at a time, the same prompt again and a follow-up turn (its prompt holding the
    earlier answer) get a fresh drafter's logits bit for bit."""
    prompt = list(range(1200, 1240))
    drafter.begin()
    out = draft_n(drafter, prompt, 6, GREEDY)
    answer = prompt + [d.token_id for d in out]
    for again in (prompt, answer + [5, 6, 7], prompt):
        drafter.begin()
        used = drafter.sync(again).copy()
        assert np.array_equal(used, fresh_drafter().sync(again))


def test_sampled_drafts_carry_their_proposal(drafter: LlamaDrafter) -> None:
    drafts = draft_n(drafter, list(range(3000, 3010)), 3, DraftSampling(0.8, 0.95, seed=4, proposal_support=8))
    for d in drafts:
        assert d.proposal is not None and d.proposal.prob_of(d.token_id) > 0 and d.proposal.ids.size <= 8


def test_draft_tokens_carry_the_drafts_confidence_and_features_when_asked(drafter: LlamaDrafter) -> None:
    ctx = list(range(2000, 2030))
    plain = drafter.draft(ctx, GREEDY)
    assert plain is not None and plain.features is None
    assert plain.confidence == confidence(drafter.sync(ctx))
    recorded = drafter.draft(ctx, DraftSampling(0.0, 1.0, 0, record_features=True))
    assert recorded is not None and recorded.features is not None
    assert recorded.features[0] == recorded.confidence == plain.confidence


def test_no_draft_past_the_context_window(drafter: LlamaDrafter) -> None:
    assert drafter.draft(list(range(100, 612)), GREEDY) is None  # n_ctx 512 is full
