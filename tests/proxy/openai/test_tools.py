"""Tool calling: the plan a request makes, the grammar of forced calls, the calls parsed back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.openai.errors import OpenAIError
from proxy.openai.prompting import PromptBuilder
from proxy.openai.schema import ChatCompletionRequest
from proxy.openai.tools import CallDelta, ToolCallStream, ToolPlan, joined_calls, plan_tools
from tests.harness import LetterTokenizer

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time"}}


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                 **fields})


def test_plans() -> None:
    assert plan_tools(chat(), False, "t").mode == "none"
    assert plan_tools(chat(tools=[WEATHER], tool_choice="none"), False, "t").mode == "none"
    named = plan_tools(chat(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}}),
                       False, "t")
    assert (named.mode, named.name) == ("named", "get_time")
    assert named.output_schema() == {"type": "object", "properties": {}}  # a function without parameters
    assert plan_tools(chat(tools=[WEATHER]), True, "t").mode == "auto"
    with pytest.raises(OpenAIError) as err:
        plan_tools(chat(tools=[WEATHER]), False, "plain ChatML")
    assert err.value.param == "tool_choice" and "plain ChatML" in err.value.message


def test_required_schema_lists_every_function_and_honours_parallel_tool_calls() -> None:
    plan = plan_tools(chat(tools=[WEATHER, TIME], tool_choice="required"), False, "t")
    schema = plan.output_schema()
    assert schema is not None and schema["minItems"] == 1 and "maxItems" not in schema
    assert [c["properties"]["name"]["const"] for c in schema["items"]["anyOf"]] == ["get_weather", "get_time"]
    single = plan_tools(chat(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False), False, "t")
    assert (single.output_schema() or {})["maxItems"] == 1


def test_a_named_call_streams_its_arguments() -> None:
    stream = ToolCallStream(ToolPlan("named", (WEATHER["function"],), "get_weather"))
    content, first = stream.push('{"city": ')
    _, second = stream.push('"Paris"}')
    assert content == "" and first[0].id and first[0].name == "get_weather" and second[0].id is None
    assert stream.finish() == ("", [])
    calls = joined_calls(stream.calls)
    assert calls == [{"id": first[0].id, "type": "function",
                      "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]


def test_required_calls_come_at_the_end() -> None:
    stream = ToolCallStream(ToolPlan("required", (WEATHER["function"], TIME["function"])))
    assert stream.push('[{"name": "get_time", "parameters": {}}, ') == ("", [])
    stream.push('{"name": "get_weather", "parameters": {"city": "Oslo"}}]')
    _, deltas = stream.finish()
    assert [(d.index, d.name, json.loads(d.arguments)) for d in deltas] == [
        (0, "get_time", {}), (1, "get_weather", {"city": "Oslo"})]
    cut = ToolCallStream(ToolPlan("required", (TIME["function"],)))
    cut.push('[{"name": "get_ti')
    assert cut.finish() == ("", []) and not cut.called  # cut short by max_tokens


def test_hermes_calls_are_parsed_out_of_the_text() -> None:
    stream = ToolCallStream(ToolPlan("auto", (WEATHER["function"],)))
    out = [stream.push(p) for p in ["Let me check. <tool", '_call>{"name": "get_weather", "argu',
                                    'ments": {"city": "Rome"}}</tool_call>', " <tool_call>not json</tool_call>"]]
    assert out[0] == ("Let me check. ", [])  # the partial marker is held back
    assert out[1] == ("", [])
    (delta,) = out[2][1]
    assert (delta.index, delta.name, json.loads(delta.arguments)) == (0, "get_weather", {"city": "Rome"})
    assert out[3][0] == " <tool_call>not json</tool_call>"  # not a call: it stays text
    assert stream.finish() == ("", []) and stream.called


def test_joined_calls_concatenate_deltas_by_index() -> None:
    deltas = [CallDelta(0, '{"a"', "c0", "f"), CallDelta(1, "{}", "c1", "g"), CallDelta(0, ": 1}")]
    assert [c["function"]["arguments"] for c in joined_calls(deltas)] == ['{"a": 1}', "{}"]


TOOL_TEMPLATE = (
    "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}"
    "{% for m in messages %}{{ m.role }}:{{ m.content }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}[call {{ c.function.name }} {{ c.function.arguments.city }}]"
    "{% endfor %}{% endif %}{% if m.tool_call_id %}({{ m.tool_call_id }}){% endif %}\n{% endfor %}"
)
HISTORY = [{"role": "user", "content": "weather?"},
           {"role": "assistant", "content": None, "tool_calls": [
               {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
           {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]


def rendered(template: str | None, **fields: Any) -> str:
    tokenizer = LetterTokenizer()
    tokenizer.chat_template = template
    builder = PromptBuilder(tokenizer)
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": HISTORY, **fields})
    captured: list[str] = []
    builder._tokenizer.encode = lambda text, special, add_bos=None: captured.append(text) or [1]  # type: ignore[method-assign]
    builder.chat(req, plan_tools(req, builder.template.supports_tools, builder.template.name))
    return captured[0]


def test_a_tool_template_is_shown_the_tools_and_the_calls() -> None:
    text = rendered(TOOL_TEMPLATE, tools=[WEATHER])
    assert text.startswith("TOOLS:get_weather;") and "[call get_weather Oslo]" in text and "tool:sunny(c1)" in text


def test_a_template_without_tools_sees_earlier_calls_as_json() -> None:
    text = rendered(None, tools=[WEATHER], tool_choice="required")
    assert '[{"name": "get_weather", "arguments": {"city": "Oslo"}}]' in text and "tool\nsunny" in text


def test_a_call_cut_short_by_max_tokens_finishes_length() -> None:
    from proxy.openai.tools import tool_finish_reason

    assert tool_finish_reason(True, "stop") == "tool_calls"
    assert tool_finish_reason(True, "length") == "length" and tool_finish_reason(False, "stop") == "stop"


def test_min_tokens_with_a_grammar_is_refused() -> None:
    import asyncio

    from tests.harness import start

    async def body() -> None:
        h = await start()
        r = await h.edge_http().post("/v1/chat/completions", json={
            "model": "bigram", "messages": [{"role": "user", "content": "hi"}], "min_tokens": 3,
            "response_format": {"type": "json_object"}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "min_tokens"
        await h.aclose()

    asyncio.run(body())
