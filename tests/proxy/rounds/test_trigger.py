"""The round triggers: the dual confidence threshold and the rejection predictor's cut."""

from __future__ import annotations

from proxy.rounds.trigger import DualThresholdTrigger, PredictorTrigger
from verifier.core.codec import DraftToken
from verifier.core.predictor import AcceptancePredictor


def _tok(conf: float | None, features: tuple[float, float, float] | None = None) -> DraftToken:
    return DraftToken(1, None, features, conf)


def test_the_dual_threshold_ends_a_round_on_either_threshold() -> None:
    both = DualThresholdTrigger(per_token=0.3, cumulative=0.2)
    round_so_far = [_tok(0.9), _tok(0.5)]  # C = 0.45 so far
    assert both.ends_round_before(_tok(0.25), round_so_far)  # P(d_n) 0.25 <= 0.3
    assert both.ends_round_before(_tok(0.4), round_so_far)  # C_n = 0.18 <= 0.2
    assert not both.ends_round_before(_tok(0.5), round_so_far)  # C_n = 0.225, P = 0.5
    assert not both.ends_round_before(_tok(0.01), [])  # a round always carries its first token
    assert not both.ends_round_before(_tok(None), round_so_far)  # model-free drafts: no confidence
    plain = DualThresholdTrigger(0.3)  # the confidence cut-off is the special case cumulative 0
    assert plain.ends_round_before(_tok(0.3), round_so_far) and not plain.ends_round_before(_tok(0.31),
                                                                                           [_tok(0.01)] * 9)
    assert not DualThresholdTrigger(0.0).ends_round_before(_tok(0.0), round_so_far)


def test_the_predictor_trigger_cuts_where_its_predicted_acceptance_drops() -> None:
    """A predictor looking only at confidence (weight 10, bias -5: p = 0.5 at confidence 0.5)
    cuts where a confidence threshold of 0.5 does."""
    predictor = PredictorTrigger(AcceptancePredictor((10.0, 0.0, 0.0), -5.0), 0.5)
    assert predictor.needs_features and not DualThresholdTrigger(0.5).needs_features
    for conf in (0.2, 0.45, 0.55, 0.9):
        token = _tok(conf, (conf, 1.0, 0.1))
        assert predictor.ends_round_before(token, [_tok(1.0)]) == (conf < 0.5)
