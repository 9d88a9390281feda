"""Request resolution: completion budgets, defaults, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.decoding.pipeline import PipelinePolicy
from proxy.draft.prediction import PredictionTrigger
from proxy.openai.errors import OpenAIError
from proxy.openai.resolve import EdgeDefaults, build_trigger, check_prediction, load_predictor, max_tokens_for, resolve
from proxy.openai.schema import ChatCompletionRequest
from proxy.rounds.trigger import DualThresholdTrigger, PredictorTrigger
from proxy.settings import EdgeSettings
from verifier.core.predictor import AcceptancePredictor

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


def edge(settings: EdgeSettings, standalone: bool = True) -> EdgeDefaults:
    predictor = load_predictor(settings)
    return EdgeDefaults(settings, 100, standalone, frozenset({0}), build_trigger(settings, predictor), predictor)


def test_defaults_and_tandem_options() -> None:
    settings = EdgeSettings(gamma=3, confidence_threshold=0.25)
    prep = resolve(chat(seed=-1), [1, 2], edge(settings), None)
    # a seeded sample: one reproducible path (stop-and-wait speculation)
    sp = prep.gen.generation.sampling
    assert (sp.temperature, sp.top_p, prep.gen.policy) == (1.0, 1.0, PipelinePolicy.stop_and_wait(3))
    assert prep.gen.trigger == DualThresholdTrigger(0.25)
    assert prep.gen.generation.sampling.seed == (1 << 63) - 1 and prep.mode == "speculative"
    assert resolve(chat(), [1, 2], edge(settings), None).gen.policy == PipelinePolicy.pipelined(3)
    prep = resolve(chat(tandem={"mode": "cloud", "gamma": 0, "confidence_threshold": 0.0}), [1], edge(settings), None)
    assert (prep.mode, prep.gen.policy.gamma, prep.gen.trigger) == ("cloud", 0, DualThresholdTrigger(0.0))
    prep = resolve(chat(tandem={"pipeline": False, "cumulative_threshold": 0.2}), [1], edge(settings), None)
    assert prep.gen.policy == PipelinePolicy.stop_and_wait(3)
    assert prep.gen.trigger == DualThresholdTrigger(0.25, 0.2)
    stop_and_wait = EdgeSettings(pipeline=False, max_inflight=2, cumulative_threshold=0.1)
    prep = resolve(chat(tandem={"pipeline": True}), [1], edge(stop_and_wait), None)
    assert prep.gen.policy == PipelinePolicy.pipelined(4, 2) and prep.gen.trigger == DualThresholdTrigger(0.3, 0.1)


def test_a_model_free_edge_refuses_draft_mode_and_thresholds() -> None:
    settings = EdgeSettings(drafter="ngram")
    assert build_trigger(settings, None) is None
    for tandem, param in [({"mode": "draft"}, "tandem.mode"), ({"confidence_threshold": 0.5},
                                                                "tandem.confidence_threshold")]:
        with pytest.raises(OpenAIError) as err:
            resolve(chat(tandem=tandem), [1], edge(settings, standalone=False), None)
        assert err.value.param == param


def test_latency_targets_pass_through_to_the_verifier() -> None:
    prep = resolve(chat(tandem={"tpot_slo_ms": 80, "ttft_slo_ms": 900}), [1], edge(EdgeSettings()), None)
    slo = prep.gen.generation.slo
    assert slo is not None and (slo.tpot_ms, slo.ttft_ms) == (80, 900)
    assert resolve(chat(), [1], edge(EdgeSettings()), None).gen.generation.slo is None


def test_the_predictor_trigger_loads_the_predictor_file(tmp_path: Path) -> None:
    AcceptancePredictor((4.0, 0.0, 0.0), -2.0).save(tmp_path / "c.json")
    settings = EdgeSettings(trigger="predictor", predictor=str(tmp_path / "c.json"), predictor_min_accept=0.6)
    trigger = build_trigger(settings, load_predictor(settings))
    assert trigger == PredictorTrigger(AcceptancePredictor((4.0, 0.0, 0.0), -2.0), 0.6)
    # a request's own threshold still wins
    prep = resolve(chat(tandem={"confidence_threshold": 0.1}), [1], edge(settings), None)
    assert prep.gen.trigger == DualThresholdTrigger(0.1)
    with pytest.raises(ValueError):
        build_trigger(EdgeSettings(trigger="predictor"), None)


def test_a_request_picks_its_trigger(tmp_path: Path) -> None:
    AcceptancePredictor((4.0, 0.0, 0.0), -2.0).save(tmp_path / "c.json")
    with_predictor = EdgeSettings(predictor=str(tmp_path / "c.json"), confidence_threshold=0.3)
    assert resolve(chat(), [1], edge(with_predictor), None).gen.trigger == DualThresholdTrigger(0.3)
    picked = resolve(chat(tandem={"trigger": "predictor"}), [1], edge(with_predictor), None).gen.trigger
    assert isinstance(picked, PredictorTrigger)
    with pytest.raises(OpenAIError) as err:
        resolve(chat(tandem={"trigger": "predictor"}), [1], edge(EdgeSettings()), None)
    assert err.value.param == "tandem.trigger"


def test_a_greedy_only_verifier_gets_greedy_speculation_and_sampled_requests_go_cloud() -> None:
    settings = EdgeSettings()
    greedy_only = EdgeDefaults(settings, 100, True, frozenset({0}), build_trigger(settings, None), None,
                               verifies_sampled=False)
    assert resolve(chat(temperature=0), [1], greedy_only, None).mode == "auto"
    assert resolve(chat(), [1], greedy_only, None).mode == "cloud"  # temperature 1 by default
    assert resolve(chat(temperature=0.5, tandem={"mode": "draft"}), [1], greedy_only, None).mode == "draft"
    with pytest.raises(OpenAIError) as err:
        resolve(chat(temperature=0.5, tandem={"mode": "speculative"}), [1], greedy_only, None)
    assert (err.value.status, err.value.param, err.value.code) == (400, "temperature", "unsupported_sampling")


def test_a_verifier_of_log_probabilities_gets_repetition_penalty_requests_cloud_only() -> None:
    settings = EdgeSettings()
    logprob_rows = EdgeDefaults(settings, 100, True, frozenset({0}), build_trigger(settings, None), None,
                                rows_are_logits=False)
    assert resolve(chat(temperature=0, repetition_penalty=1.2), [1], logprob_rows, None).mode == "cloud"
    assert resolve(chat(temperature=0.7, seed=3, repetition_penalty=1.2), [1], logprob_rows, None).mode == "cloud"
    assert resolve(chat(temperature=0.7, frequency_penalty=0.5), [1], logprob_rows, None).mode == "auto"
    with pytest.raises(OpenAIError) as err:
        resolve(chat(temperature=0, repetition_penalty=1.2, tandem={"mode": "speculative"}), [1], logprob_rows, None)
    assert (err.value.status, err.value.param, err.value.code) == (400, "repetition_penalty", "unsupported_sampling")


def test_a_seeded_sample_in_mode_auto_takes_one_reproducible_path() -> None:
    prep = resolve(chat(temperature=0.8, seed=5), [1], edge(EdgeSettings()), None)
    assert prep.mode == "speculative" and prep.gen.policy == PipelinePolicy.stop_and_wait(4)
    assert resolve(chat(temperature=0.8), [1], edge(EdgeSettings()), None).mode == "auto"
    assert resolve(chat(temperature=0, seed=5), [1], edge(EdgeSettings()), None).mode == "auto"  # greedy: any path


def test_a_prediction_gets_long_rounds_and_keeps_the_own_drafts_trigger() -> None:
    settings = EdgeSettings(gamma=3, confidence_threshold=0.25, prediction_round=24)
    prep = resolve(chat(temperature=0), [1, 2], edge(settings), None, prediction_ids=[5, 6, 7])
    assert prep.gen.prediction == (5, 6, 7) and prep.gen.policy.gamma == 24
    trigger = prep.gen.trigger
    assert isinstance(trigger, PredictionTrigger)
    assert (trigger.inner, trigger.drafted_per_round, trigger.longest, trigger.trusted) == (
        DualThresholdTrigger(0.25), 3, 24, 6)
    assert prep.gen.tuning is None and prep.gen.upload is None
    plain = resolve(chat(temperature=0), [1, 2], edge(settings), None)
    assert plain.gen.prediction is None and plain.gen.policy.gamma == 3


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
])
def test_a_prediction_is_refused_where_openai_refuses_it(fields: dict[str, object], param: str) -> None:
    check_prediction(chat(**fields))  # no prediction: nothing to refuse
    with pytest.raises(OpenAIError) as err:
        check_prediction(chat(prediction={"type": "content", "content": "x"}, **fields))
    assert err.value.status == 400 and err.value.param == param and "prediction" in err.value.message


def test_a_generation_vllms_own_decoding_cannot_continue_is_marked_for_mode_auto() -> None:
    """presence/frequency penalties on a verifier whose decoding sees earlier output as prompt
    (vLLM's: ``continues_output`` False): the cloud may serve it only from its start."""
    from dataclasses import replace

    vllm_like = replace(edge(EdgeSettings()), continues_output=False)
    assert not resolve(chat(frequency_penalty=1.0), [1], vllm_like, None).gen.cloud_resumes
    assert not resolve(chat(presence_penalty=0.5), [1], vllm_like, None).gen.cloud_resumes
    assert resolve(chat(repetition_penalty=1.3), [1], vllm_like, None).gen.cloud_resumes  # vLLM counts the prompt
    assert resolve(chat(), [1], vllm_like, None).gen.cloud_resumes
    assert resolve(chat(frequency_penalty=1.0), [1], edge(EdgeSettings()), None).gen.cloud_resumes  # torch's can
