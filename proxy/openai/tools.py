"""Tool calling: what a request's ``tools``/``tool_choice`` ask of the output, and the output
turned back into OpenAI ``tool_calls``.

- ``tool_choice`` a named function: the output is that function's arguments, by constrained
  decoding with its parameters schema (works whatever the chat template, as in vLLM).
- ``"required"``: the output is a JSON array of one or more ``{"name", "parameters"}`` calls
  (one at most when ``parallel_tool_calls`` is false), by constrained decoding.
- ``"auto"`` (the default when tools are given): the model decides, which needs a chat
  template that shows it the tools; calls come back in the Hermes format
  (``<tool_call>{"name": ..., "arguments": ...}</tool_call>``, Qwen, Hermes, SmolLM3). A template
  without tool support is a 400 that says so.
- ``"none"``: plain text.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from proxy.openai.errors import bad_request
from proxy.openai.schema import ChatCompletionRequest, NamedToolChoice

ToolMode = Literal["none", "named", "required", "auto"]
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class ToolPlan:
    mode: ToolMode = "none"
    functions: tuple[dict[str, Any], ...] = ()  # the tools' function definitions, as sent
    name: str | None = None  # the function a named tool_choice forces
    parallel: bool = True

    def parameters(self, name: str) -> dict[str, Any]:
        for f in self.functions:
            if f["name"] == name:
                params: dict[str, Any] = f.get("parameters") or {"type": "object", "properties": {}}
                return params
        raise KeyError(name)

    def output_schema(self) -> dict[str, Any] | None:
        """The JSON schema the output must follow (named and required), else None."""
        if self.mode == "named" and self.name is not None:
            return self.parameters(self.name)
        if self.mode == "required":
            calls = [{"type": "object", "properties": {"name": {"const": f["name"]},
                                                        "parameters": self.parameters(f["name"])},
                      "required": ["name", "parameters"], "additionalProperties": False} for f in self.functions]
            schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": calls}}
            if not self.parallel:
                schema["maxItems"] = 1
            return schema
        return None


def plan_tools(req: ChatCompletionRequest, template_supports_tools: bool, template_name: str) -> ToolPlan:
    """The request's tool plan (a 400 for "auto" when the chat template cannot show tools)."""
    if not req.tools or req.tool_choice == "none":
        return ToolPlan("none")
    functions = tuple(t.function.model_dump(exclude_none=True) for t in req.tools)
    parallel = req.parallel_tool_calls is not False
    if isinstance(req.tool_choice, NamedToolChoice):
        return ToolPlan("named", functions, req.tool_choice.function.name, parallel)
    if req.tool_choice == "required":
        return ToolPlan("required", functions, None, parallel)
    if not template_supports_tools:
        raise bad_request(
            f"tool_choice 'auto' (the default with tools) needs a chat template that shows the model its tools; "
            f"this model's template ({template_name}) has none. Use tool_choice 'required' or a named function "
            "(constrained decoding, any template), or serve a model whose chat template takes tools (Hermes-style "
            "<tool_call> output, e.g. Qwen2.5 or SmolLM3)", "tool_choice", "unsupported_tool_choice")
    return ToolPlan("auto", functions, None, parallel)


def tool_finish_reason(called: bool, finish_reason: str) -> str:
    """"tool_calls" when the output ended in calls; "length" stays: a call cut short by
    max_tokens is not a call the client can run."""
    return "tool_calls" if called and finish_reason == "stop" else finish_reason


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass(frozen=True)
class CallDelta:
    """One piece of a streamed tool call: the first of a call carries its id and name."""

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None


@dataclass
class ToolCallStream:
    """One choice's output text turned into content and tool calls, incrementally."""

    plan: ToolPlan
    calls: list[CallDelta] = field(default_factory=list)  # every delta so far (the whole calls, joined)
    _buffer: str = ""
    _inside: bool = False
    _started: bool = False

    def push(self, text: str) -> tuple[str, list[CallDelta]]:
        """Content text and call deltas this output text releases."""
        if self.plan.mode == "named":
            delta = CallDelta(0, text, new_call_id(), self.plan.name) if not self._started else CallDelta(0, text)
            self._started = True
            return "", self._record([delta])
        if self.plan.mode == "required":
            self._buffer += text
            return "", []
        if self.plan.mode == "auto":
            return self._hermes(text)
        return text, []

    def finish(self) -> tuple[str, list[CallDelta]]:
        """What the end of the output releases."""
        if self.plan.mode == "named" and not self._started:
            self._started = True
            return "", self._record([CallDelta(0, "", new_call_id(), self.plan.name)])
        if self.plan.mode == "required":
            try:
                parsed = json.loads(self._buffer)
            except json.JSONDecodeError:  # cut short by max_tokens: no call to report
                return "", []
            return "", self._record([CallDelta(i, json.dumps(c["parameters"], ensure_ascii=False), new_call_id(),
                                               c["name"]) for i, c in enumerate(parsed)])
        rest, self._buffer = self._buffer, ""
        return ("" if self._inside else rest), []

    @property
    def called(self) -> bool:
        return bool(self.calls)

    def _record(self, deltas: list[CallDelta]) -> list[CallDelta]:
        self.calls.extend(deltas)
        return deltas

    def _hermes(self, text: str) -> tuple[str, list[CallDelta]]:
        self._buffer += text
        content, deltas = "", list[CallDelta]()
        while True:
            if not self._inside:
                at = self._buffer.find(CALL_OPEN)
                if at < 0:
                    keep = _partial_suffix(self._buffer, CALL_OPEN)
                    content += self._buffer[: len(self._buffer) - keep]
                    self._buffer = self._buffer[len(self._buffer) - keep:]
                    break
                content += self._buffer[:at]
                self._buffer = self._buffer[at + len(CALL_OPEN):]
                self._inside = True
            end = self._buffer.find(CALL_CLOSE)
            if end < 0:
                break
            body, self._buffer = self._buffer[:end], self._buffer[end + len(CALL_CLOSE):]
            self._inside = False
            try:
                call = json.loads(body)
                arguments = call.get("arguments", call.get("parameters", {}))
                deltas.append(CallDelta(len({d.index for d in self.calls} | {d.index for d in deltas}),
                                        arguments if isinstance(arguments, str) else json.dumps(arguments),
                                        new_call_id(), str(call["name"])))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                content += CALL_OPEN + body + CALL_CLOSE  # not a call after all: it stays text
        return content, self._record(deltas)


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def joined_calls(deltas: list[CallDelta]) -> list[dict[str, Any]]:
    """Whole tool calls (OpenAI's ``message.tool_calls``) from their deltas."""
    calls: dict[int, dict[str, Any]] = {}
    for d in deltas:
        call = calls.setdefault(d.index, {"id": d.id, "type": "function", "function": {"name": d.name,
                                                                                         "arguments": ""}})
        call["function"]["arguments"] += d.arguments
    return [calls[i] for i in sorted(calls)]
