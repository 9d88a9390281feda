"""Request resolution: completion budgets, defaults, refusals."""

from __future__ import annotations

import pytest

from proxy.errors import OpenAIError
from proxy.openai_schema import ChatCompletionRequest
from proxy.resolve import max_tokens_for, resolve
from proxy.settings import EdgeSettings

MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": MESSAGES, **fields})


def test_budget_is_the_request_else_the_default_else_the_room() -> None:
    assert max_tokens_for(chat(max_tokens=5), 10, 100, None) == 5
    assert max_tokens_for(chat(max_completion_tokens=7, max_tokens=5), 10, 100, None) == 7
    assert max_tokens_for(chat(), 10, 100, 16) == 16
    assert max_tokens_for(chat(), 10, 100, None) == 90
    assert max_tokens_for(chat(), 95, 100, 16) == 5


@pytest.mark.parametrize("prompt,asked,param", [(100, None, "messages"), (90, 20, "max_tokens")])
def test_over_the_context_is_refused(prompt: int, asked: int | None, param: str) -> None:
    with pytest.raises(OpenAIError) as err:
        max_tokens_for(chat(max_tokens=asked), prompt, 100, None)
    assert err.value.code == "context_length_exceeded" and err.value.param == param


def test_defaults_and_tandem_options() -> None:
    settings = EdgeSettings(gamma=3, confidence_threshold=0.25)
    prep = resolve(chat(seed=-1), [1, 2], settings, 100, True, frozenset({0}), None)
    assert (prep.gen.temperature, prep.gen.top_p, prep.gen.gamma, prep.gen.confidence_threshold) == (1.0, 1.0, 3, 0.25)
    assert prep.gen.seed == (1 << 63) - 1 and prep.mode == "speculative"
    prep = resolve(chat(tandem={"mode": "cloud", "gamma": 0, "confidence_threshold": 0.0}), [1], settings, 100,
                   True, frozenset(), None)
    assert (prep.mode, prep.gen.gamma, prep.gen.confidence_threshold) == ("cloud", 0, 0.0)


def test_a_model_free_edge_refuses_draft_mode_and_thresholds() -> None:
    settings = EdgeSettings(drafter="ngram")
    for tandem, param in [({"mode": "draft"}, "tandem.mode"), ({"confidence_threshold": 0.5},
                                                                "tandem.confidence_threshold")]:
        with pytest.raises(OpenAIError) as err:
            resolve(chat(tandem=tandem), [1], settings, 100, False, frozenset(), None)
        assert err.value.param == param


def test_latency_targets_pass_through_to_the_verifier() -> None:
    prep = resolve(chat(tandem={"tpot_slo_ms": 80, "ttft_slo_ms": 900}), [1], EdgeSettings(), 100, True,
                   frozenset(), None)
    assert prep.gen.slo is not None and (prep.gen.slo.tpot_ms, prep.gen.slo.ttft_ms) == (80, 900)
    assert resolve(chat(), [1], EdgeSettings(), 100, True, frozenset(), None).gen.slo is None
