from __future__ import annotations

import pytest
from pydantic import ValidationError

from proxy.openai.schema import ChatCompletionRequest, CompletionRequest, TandemOptions

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chat(**kw: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({**BASE, **kw})


def test_minimal_request() -> None:
    req = chat()
    assert req.stop_list() == [] and not req.stream and req.token_limit() is None


def test_stop_string_or_list() -> None:
    assert chat(stop="x").stop_list() == ["x"]
    assert chat(stop=["a", "b"]).stop_list() == ["a", "b"]


def test_max_completion_tokens_wins() -> None:
    assert chat(max_tokens=5, max_completion_tokens=7).token_limit() == 7


def test_neutral_values_accepted() -> None:
    req = chat(n=1, presence_penalty=0, frequency_penalty=0.0, logprobs=False, user="u", seed=3)
    assert (req.n, req.presence_penalty, req.frequency_penalty, req.logprobs, req.user, req.seed) == \
        (1, 0.0, 0.0, False, "u", 3)
    # accepted as the fields they are: none reported as ignored, and no logprobs asked for
    assert req.ignored_fields() == [] and req.logprobs_wanted() is None and req.best_of_wanted() == 1


def test_fields_without_effect_on_generation_are_accepted() -> None:
    req = chat(store=False, metadata={"k": "v"}, service_tier="auto", user={"id": "u1", "name": "x"},
               safety_identifier="s", prompt_cache_key="p", parallel_tool_calls=True, tools=[], tool_choice="none",
               response_format={"type": "text"}, modalities=["text"], stream=True,
               stream_options={"include_usage": True, "include_obfuscation": False})
    assert req.ignored_fields() == []
    assert chat(foo=1, messages=[{"role": "user", "content": "x", "bar": 2}]).ignored_fields() == ["foo",
                                                                                                   "messages[].bar"]


@pytest.mark.parametrize("field,value", [
    ("reasoning_effort", "low"), ("audio", {"voice": "alloy", "format": "wav"}), ("modalities", ["text", "audio"]),
    ("prediction", {"type": "text", "content": "x"}), ("prediction", {"type": "content"}),
    ("prediction", {"type": "content", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}),
    ("prediction", "x"), ("response_format", {"type": "xml"}),
    ("tool_choice", "sometimes"), ("functions", [{"name": "f"}]), ("web_search_options", {}),
])
def test_fields_that_would_change_the_output_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        chat(**{field: value})
    assert info.value.errors()[0]["loc"][0] == field


def test_a_prediction_is_text_or_text_parts() -> None:
    assert chat(prediction={"type": "content", "content": "ab"}).prediction.text() == "ab"  # type: ignore[union-attr]
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert chat(prediction={"type": "content", "content": parts}).prediction.text() == "ab"  # type: ignore[union-attr]


def test_text_parts_are_joined() -> None:
    req = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
    assert req.messages[0].text() == "ab"


@pytest.mark.parametrize("bad", [
    {"temperature": 2.5}, {"temperature": -0.1}, {"top_p": 0}, {"top_p": 1.2}, {"messages": []},
    {"messages": [{"role": "robot", "content": "x"}]}, {"messages": [{"role": "function", "content": "x"}]},
    {"n": 17}, {"n": 0}, {"presence_penalty": 2.5}, {"top_logprobs": 2}, {"top_logprobs": 21, "logprobs": True},
    {"tools": [{"type": "function"}]},
    {"max_tokens": 0}, {"stop": ["a", "b", "c", "d", "e"]}, {"stream_options": {"include_usage": True}},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    {"logit_bias": {"x1": 2.0}}, {"logit_bias": {"1": 101}}, {"min_tokens": 5, "max_tokens": 2},
    {"top_k": -2}, {"repetition_penalty": 0},
])
def test_invalid_requests_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        chat(**bad)


def test_completion_request() -> None:
    req = CompletionRequest.model_validate({"model": "m", "prompt": ["once"]})
    assert req.prompt_text() == "once"
    for bad in [{"best_of": 2, "n": 3}, {"best_of": 2, "stream": True},
                {"suffix": "x"}, {"prompt": ["a", "b"]},
                {"logprobs": 21}]:
        with pytest.raises(ValidationError):
            CompletionRequest.model_validate({"model": "m", "prompt": "x", **bad})


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_confidence_threshold_outside_0_1_is_refused(value: float) -> None:
    with pytest.raises(ValueError):
        TandemOptions(confidence_threshold=value)


def test_response_format_json_object_and_json_schema() -> None:
    assert chat(response_format={"type": "json_object"}).output_schema() == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    assert req.output_schema() == schema
    assert chat(response_format={"type": "text"}).output_schema() is None
    with pytest.raises(ValidationError):
        chat(response_format={"type": "json_schema"})  # the json_schema object is required
