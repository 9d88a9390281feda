"""Tool calls through the edge with the default model pair (whose chat template shows no tools):
a named tool_choice and "required" by constrained decoding, streamed as deltas, speculative
equal to cloud; "auto" refused with the template named; a conversation with tool results."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MODEL_ID, Server
from tests.e2e.paths import assert_path

pytestmark = pytest.mark.integration

WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                   "required": ["city"], "additionalProperties": False}}}
TIME: Any = {"type": "function", "function": {
    "name": "get_time", "description": "The current time in a timezone",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 30}},
                   "required": ["tz"], "additionalProperties": False}}}
MESSAGES: Any = [{"role": "user", "content": "What is the weather like in Paris?"}]
NAMED: Any = {"type": "function", "function": {"name": "get_weather"}}


def client(edge: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_a_named_tool_is_called_with_arguments_that_follow_its_schema(edge: Server) -> None:
    calls = []
    for mode in ("speculative", "cloud"):
        r = client(edge).chat.completions.create(model=MODEL_ID, messages=MESSAGES, tools=[WEATHER, TIME],
                                                 tool_choice=NAMED, temperature=0, max_tokens=40,
                                                 extra_body={"tandem": {"mode": mode}})
        assert_path(r.model_extra["tandem"], mode)  # type: ignore[index]
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
        args = json.loads(call.function.arguments)
        assert set(args) == {"city"} and isinstance(args["city"], str)
        calls.append(call.function.arguments)
    assert calls[0] == calls[1]  # speculation gives the target's own constrained output
    stream = client(edge).chat.completions.create(model=MODEL_ID, messages=MESSAGES, tools=[WEATHER, TIME],
                                                  tool_choice=NAMED, temperature=0, max_tokens=40, stream=True,
                                                  extra_body={"tandem": {"mode": "speculative"}})
    pieces, names, finish = [], [], None
    for chunk in stream:
        for c in chunk.choices:
            for d in c.delta.tool_calls or []:
                assert d.index == 0
                names += [d.function.name] if d.function and d.function.name else []
                pieces.append(d.function.arguments if d.function and d.function.arguments else "")
            finish = c.finish_reason or finish
    assert names == ["get_weather"] and "".join(pieces) == calls[0] and finish == "tool_calls"


def test_a_call_cut_by_max_tokens_finishes_length(edge: Server) -> None:
    r = client(edge).chat.completions.create(model=MODEL_ID, messages=MESSAGES, tools=[WEATHER], tool_choice=NAMED,
                                             temperature=0, max_tokens=3)
    assert r.choices[0].finish_reason == "length"


def test_required_makes_at_least_one_call_of_the_given_tools(edge: Server) -> None:
    r = client(edge).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "What time is it in Tokyo?"}], tools=[WEATHER, TIME],
        tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=80)
    choice = r.choices[0]
    assert choice.message.content is None and len(choice.message.tool_calls or []) == 1
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.function.name in {"get_weather", "get_time"}
        assert isinstance(json.loads(call.function.arguments), dict)


def test_auto_on_a_template_without_tools_is_400_naming_tool_choice(edge: Server) -> None:
    resp = httpx.post(f"{edge.url}/v1/chat/completions", timeout=60, json={
        "model": MODEL_ID, "messages": MESSAGES, "tools": [WEATHER]})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == "tool_choice" and "template" in error["message"]


def test_a_conversation_with_tool_results_is_answered(edge: Server) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    history: Any = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"}]
    r = client(edge).chat.completions.create(model=MODEL_ID, messages=history, tools=[WEATHER], tool_choice="none",
                                             temperature=0, max_tokens=24)
    assert r.choices[0].message.content and not r.choices[0].message.tool_calls
