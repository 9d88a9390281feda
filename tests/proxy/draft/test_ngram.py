from __future__ import annotations

from proxy.draft.ngram import NgramDrafter, lookup
from verifier.core.drafting import DraftSampling


def test_lookup_continues_the_most_recent_match() -> None:
    ctx = [1, 2, 3, 9, 1, 2, 3, 7, 8, 1, 2, 3]
    assert lookup(ctx, 2) == [7, 8]


def test_lookup_prefers_longer_ngrams() -> None:
    ctx = [5, 1, 2, 6, 3, 2, 4, 4, 1, 2]
    # trigram [4, 1, 2] never occurred before; bigram [1, 2] did, followed by 6
    assert lookup(ctx, 3) == [6, 3, 2]


def test_lookup_nothing_to_find() -> None:
    assert lookup([1, 2, 3], 4) == []
    assert lookup([], 4) == []


def test_drafter_gives_id_only_proposals_and_stops_at_eos() -> None:
    d = NgramDrafter()
    drafts = d.propose([4, 5, 2, 9, 9, 4, 5], 4, DraftSampling(0.7, 1.0, 0), frozenset({2}))
    assert [x.token_id for x in drafts] == [2]
    assert all(x.proposal is None for x in drafts)
