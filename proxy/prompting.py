"""Requests to prompt token ids: chat messages through the model's chat template, or a text prompt."""

from __future__ import annotations

from proxy.errors import bad_request
from proxy.openai_schema import ChatCompletionRequest, CompletionRequest
from proxy.tokenizer import Tokenizer
from verifier.core.chat_template import ChatTemplate, ChatTemplateError


class PromptBuilder:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._template = ChatTemplate(tokenizer.chat_template, tokenizer.bos_text, tokenizer.eos_text)

    def chat(self, req: ChatCompletionRequest) -> list[int]:
        messages = []
        for m in req.messages:
            role = "system" if m.role == "developer" else m.role
            if m.content is None:
                raise bad_request("messages: every message needs content", "messages")
            messages.append({"role": role, "content": m.text()})
        try:
            text = self._template.render(messages, add_generation_prompt=True)
        except ChatTemplateError as exc:
            raise bad_request(str(exc), "messages") from exc
        return self._tokenizer.encode(text, special=True, add_bos=self._tokenizer.add_bos)

    def text(self, req: CompletionRequest) -> list[int]:
        ids = self._tokenizer.encode(req.prompt_text(), special=True)
        if not ids:
            raise bad_request("prompt must not be empty", "prompt")
        return ids
