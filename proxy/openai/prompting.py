"""Requests to prompt token ids: chat messages through the model's chat template, or a text prompt."""

from __future__ import annotations

import json
from typing import Any

from proxy.openai.errors import bad_request
from proxy.openai.schema import ChatCompletionRequest, ChatMessage, CompletionRequest
from proxy.openai.tools import ToolPlan
from proxy.tokenizer import Tokenizer
from verifier.core.chat_template import ChatTemplate, ChatTemplateError


class PromptBuilder:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self.template = ChatTemplate(tokenizer.chat_template, tokenizer.bos_text, tokenizer.eos_text)

    def chat(self, req: ChatCompletionRequest, plan: ToolPlan | None = None) -> list[int]:
        """The prompt of a chat; the tools shown to the model when the template takes them (an
        assistant's earlier calls are shown as JSON text to a template that does not)."""
        messages = [self._message(m) for m in req.messages]
        tools = None
        if plan is not None and plan.mode != "none" and self.template.supports_tools:
            tools = [{"type": "function", "function": f} for f in plan.functions]
        try:
            text = self.template.render(messages, add_generation_prompt=True, tools=tools)
        except ChatTemplateError as exc:
            raise bad_request(str(exc), "messages") from exc
        return self._tokenizer.encode(text, special=True, add_bos=self._tokenizer.add_bos)

    def _message(self, m: ChatMessage) -> dict[str, Any]:
        role = "system" if m.role == "developer" else m.role
        if m.content is None and not m.tool_calls:
            raise bad_request("messages: every message needs content (or, from the assistant, tool_calls)",
                              "messages")
        out: dict[str, Any] = {"role": role, "content": m.text()}
        if m.name is not None:
            out["name"] = m.name
        if m.tool_call_id is not None:
            out["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            if self.template.supports_tools:
                out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                    "name": c.function.name, "arguments": _arguments(c.function.arguments)}} for c in m.tool_calls]
            else:
                calls = [{"name": c.function.name, "arguments": _arguments(c.function.arguments)} for c in m.tool_calls]
                out["content"] = (out["content"] + "\n" if out["content"] else "") + json.dumps(calls)
        return out

    def text(self, req: CompletionRequest) -> list[int]:
        ids = self._tokenizer.encode(req.prompt_text(), special=True)
        if not ids:
            raise bad_request("prompt must not be empty", "prompt")
        return ids


def _arguments(text: str) -> Any:
    """A call's arguments as a template expects them (an object), or the text if it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
