from __future__ import annotations

from proxy.draft.draws import DraftSampling
from proxy.draft.ngram import NgramDrafter, lookup


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


def test_drafter_gives_id_only_tokens_and_none_without_a_match() -> None:
    d = NgramDrafter()
    token = d.draft([4, 5, 2, 9, 9, 4, 5], DraftSampling(0.7, 1.0, 0))
    assert token is not None and token.token_id == 2 and token.proposal is None and token.confidence is None
    assert d.draft([1, 2, 3], DraftSampling(0.0, 1.0, 0)) is None
