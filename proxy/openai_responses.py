"""OpenAI response objects of the edge (chat and text completions, stream chunks, models).

Typed models of the shapes OpenAI's API returns; ``ResponseBuilder`` fills them for one
request. Field order and nulls follow OpenAI's own responses, so strict clients parse them.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, model_serializer

from proxy.output import Finished, Stats

DEGRADED_FINGERPRINT = "tandem-degraded"  # system_fingerprint of output the draft model produced alone


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    unverified_tokens: int | None = None  # Tandem: completion tokens the cloud did not verify (degraded)

    @classmethod
    def of(cls, f: Finished) -> Usage:
        unverified = f.stats.get("unverified_tokens") if f.degraded else None
        return cls(prompt_tokens=f.prompt_tokens, completion_tokens=f.completion_tokens,
                   total_tokens=f.prompt_tokens + f.completion_tokens,
                   unverified_tokens=int(unverified) if unverified is not None else None)

    @model_serializer(mode="wrap")
    def _tandem_only_when_set(self, handler: Any) -> dict[str, Any]:
        body: dict[str, Any] = handler(self)
        if body.get("unverified_tokens") is None:
            body.pop("unverified_tokens", None)
        return body


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    logprobs: None = None
    finish_reason: str


class ChatDelta(BaseModel):
    """A stream delta: only the fields it carries are sent (``{}`` on the final chunk)."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer
    def _present_only(self) -> dict[str, Any]:
        return {k: v for k, v in (("role", self.role), ("content", self.content)) if v is not None}


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    logprobs: None = None
    finish_reason: str | None = None


class TextChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: str | None = None


class _Object(BaseModel):
    id: str
    object: str
    created: int
    model: str
    system_fingerprint: str | None = None  # DEGRADED_FINGERPRINT when the draft model answered alone


class ChatCompletion(_Object):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage
    tandem: Stats


class ChatCompletionChunk(_Object):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    tandem: Stats | None = None


class TextCompletion(_Object):
    """A text completion, and a chunk of a streamed one (OpenAI uses one object name for both)."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[TextChoice]
    usage: Usage | None = None
    tandem: Stats | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tandem"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


Chunk = ChatCompletionChunk | TextCompletion


def dump(obj: BaseModel, include_usage: bool = True) -> dict[str, Any]:
    """The JSON object of a response: ``tandem`` only where it is set; ``usage`` on stream
    chunks only when the client asked for it (then ``null`` on every chunk but the last)."""
    body = obj.model_dump()
    if body.get("tandem") is None:
        body.pop("tandem", None)
    if not include_usage:
        body.pop("usage", None)
    return body


class ResponseBuilder:
    """The response objects of one request (chat or text completion), sharing id and time."""

    def __init__(self, kind: Literal["chat", "text"], model: str) -> None:
        self.chat = kind == "chat"
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model

    def _ids(self, degraded: bool = False) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "model": self.model,
                "system_fingerprint": DEGRADED_FINGERPRINT if degraded else None}

    def full(self, text: str, f: Finished) -> ChatCompletion | TextCompletion:
        ids = self._ids(f.degraded)
        if self.chat:
            return ChatCompletion(**ids, usage=Usage.of(f), tandem=f.stats, choices=[
                ChatChoice(message=ChatMessageOut(content=text), finish_reason=f.finish_reason)])
        return TextCompletion(**ids, usage=Usage.of(f), tandem=f.stats, choices=[
            TextChoice(text=text, finish_reason=f.finish_reason)])

    def chunk(self, text: str | None, finish: str | None = None, first: bool = False,
              stats: Stats | None = None, degraded: bool = False) -> Chunk:
        """A stream chunk; one of degraded output says so (``tandem.degraded``, the fingerprint)."""
        degraded = degraded or bool(stats and stats.get("degraded"))
        tandem: Stats | None = stats
        if tandem is None and degraded:
            tandem = {"degraded": True}
        if self.chat:
            delta = ChatDelta(role="assistant" if first else None, content=text)
            return ChatCompletionChunk(**self._ids(degraded), tandem=tandem, choices=[
                ChatChunkChoice(delta=delta, finish_reason=finish)])
        return TextCompletion(**self._ids(degraded), tandem=tandem,
                              choices=[TextChoice(text=text or "", finish_reason=finish)])

    def usage_chunk(self, f: Finished) -> Chunk:
        """The final chunk of a stream with include_usage: no choices, the usage."""
        ids = self._ids(f.degraded)
        if self.chat:
            return ChatCompletionChunk(**ids, choices=[], usage=Usage.of(f))
        return TextCompletion(**ids, choices=[], usage=Usage.of(f))
