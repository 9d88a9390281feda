"""OpenAI response objects of the edge (chat and text completions, stream chunks, models).

Typed models of the shapes OpenAI's API returns; ``ResponseBuilder`` fills them for one
request. Field order and nulls follow OpenAI's own responses, so strict clients parse them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, model_serializer

from proxy.decoding.request import Stats
from proxy.openai.output import Finished, TokenEntry
from proxy.openai.tools import CallDelta, tool_finish_reason

DEGRADED_FINGERPRINT = "tandem-degraded"  # system_fingerprint of output the draft model produced alone


class _Sparse(BaseModel):
    """An object whose ``omitted_when_none`` fields are left out, not sent as null, when unset."""

    omitted_when_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: Any) -> dict[str, Any]:
        body: dict[str, Any] = handler(self)
        for key in self.omitted_when_none:
            if body.get(key) is None:
                body.pop(key, None)
        return body


class CompletionTokensDetails(BaseModel):
    """OpenAI's breakdown of the completion tokens (sent with a prediction): the prediction's
    tokens that appeared in the completion and those that did not (``PredictionCounts``)."""

    reasoning_tokens: int = 0
    audio_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class Usage(_Sparse):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = None
    unverified_tokens: int | None = None  # Tandem: completion tokens the cloud did not verify (degraded)
    omitted_when_none = ("unverified_tokens", "completion_tokens_details")

    @classmethod
    def of(cls, finished: Sequence[Finished]) -> Usage:
        """The usage of a request's choices: the prompt once, the completions of all."""
        completion = sum(f.completion_tokens for f in finished)
        unverified = [int(f.stats.get("unverified_tokens", 0)) for f in finished if f.degraded]
        prompt = finished[0].prompt_tokens
        predicted = [f.stats for f in finished if "accepted_prediction_tokens" in f.stats]
        details = CompletionTokensDetails(
            accepted_prediction_tokens=sum(int(s["accepted_prediction_tokens"]) for s in predicted),
            rejected_prediction_tokens=sum(int(s["rejected_prediction_tokens"]) for s in predicted),
        ) if predicted else None
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                   completion_tokens_details=details, unverified_tokens=sum(unverified) if unverified else None)


class FunctionOut(_Sparse):
    name: str | None = None  # a streamed call's first piece carries it, the later ones not
    arguments: str
    omitted_when_none = ("name",)


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionOut


class ToolCallDeltaOut(_Sparse):
    """A piece of a streamed tool call; the first of a call carries its id, type and name."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionOut
    omitted_when_none = ("id", "type")

    @classmethod
    def of(cls, d: CallDelta) -> ToolCallDeltaOut:
        return cls(index=d.index, id=d.id, type="function" if d.id else None,
                   function=FunctionOut(name=d.name, arguments=d.arguments))


class ChatMessageOut(_Sparse):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None
    omitted_when_none = ("tool_calls",)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobOut(BaseModel):
    """One output token in OpenAI's ``logprobs.content``; ``logprob`` null for a token the draft
    model produced alone (no target saw it)."""

    token: str
    logprob: float | None
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprobOut]
    refusal: None = None


class TextLogprobs(BaseModel):
    """The legacy completions shape: parallel lists, ``text_offset`` in characters."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class LogprobsView:
    """Target logprobs (token ids) as OpenAI's objects, token texts from the tokenizer."""

    def __init__(self, piece: Callable[[int], bytes]) -> None:
        self._piece = piece

    def _text(self, token_id: int) -> tuple[str, list[int]]:
        raw = self._piece(token_id)
        return raw.decode("utf-8", errors="replace"), list(raw)

    def _top(self, token_id: int, logprob: float) -> TopLogprob:
        text, raw = self._text(token_id)
        return TopLogprob(token=text, logprob=logprob, bytes=raw)

    def content(self, entries: Sequence[TokenEntry]) -> list[TokenLogprobOut]:
        out = []
        for token, entry in entries:
            text, raw = self._text(token)
            top = [self._top(i, lp) for i, lp in entry.top] if entry else []
            out.append(TokenLogprobOut(token=text, logprob=entry.logprob if entry else None, bytes=raw,
                                       top_logprobs=top))
        return out

    def chat(self, entries: Sequence[TokenEntry]) -> ChatLogprobs:
        return ChatLogprobs(content=self.content(entries))

    def text(self, entries: Sequence[TokenEntry], offset: int) -> TextLogprobs:
        """``offset``: characters of the completion before these tokens."""
        content = self.content(entries)
        offsets = []
        for c in content:
            offsets.append(offset)
            offset += len(c.token)
        return TextLogprobs(tokens=[c.token for c in content], token_logprobs=[c.logprob for c in content],
                            top_logprobs=[{t.token: t.logprob for t in c.top_logprobs} if e else None
                                          for c, (_, e) in zip(content, entries)],
                            text_offset=offsets)


class ChatChoice(_Sparse):
    index: int = 0
    message: ChatMessageOut
    logprobs: ChatLogprobs | None = None
    finish_reason: str
    token_ids: list[int] | None = None  # vLLM's extension (``return_token_ids``): the output token ids
    omitted_when_none = ("token_ids",)


class ChatDelta(_Sparse):
    """A stream delta: only the fields it carries are sent (``{}`` on the final chunk)."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDeltaOut] | None = None
    omitted_when_none = ("role", "content", "tool_calls")


class ChatChunkChoice(_Sparse):
    index: int = 0
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None
    token_ids: list[int] | None = None  # ``return_token_ids``: all of the choice's, on its last chunk
    omitted_when_none = ("token_ids",)


class TextChoice(_Sparse):
    index: int = 0
    text: str
    logprobs: TextLogprobs | None = None
    finish_reason: str | None = None
    token_ids: list[int] | None = None  # ``return_token_ids`` (a stream: all of them, on the choice's last chunk)
    omitted_when_none = ("token_ids",)


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


def _ids_of(token_ids: Sequence[int] | None) -> list[int] | None:
    return list(token_ids) if token_ids is not None else None


@dataclass
class ChoiceResult:
    """One choice of a whole (not streamed) response; ``tool_calls`` when the model made calls
    (``text`` is then whatever content came with them, None for none)."""

    text: str | None
    finished: Finished
    entries: list[TokenEntry]
    tool_calls: list[dict[str, Any]] | None = None

    @property
    def finish_reason(self) -> str:
        return tool_finish_reason(bool(self.tool_calls), self.finished.finish_reason)


class ResponseBuilder:
    """The response objects of one request (chat or text completion), sharing id and time.
    ``logprobs``: the request asked for them (rendered by this view); ``echo``: the prompt text
    a completion starts with (``echo: true``), ``echo_entries`` its tokens' logprobs when asked."""

    def __init__(self, kind: Literal["chat", "text"], model: str, logprobs: LogprobsView | None = None,
                 echo: str = "", echo_entries: Sequence[TokenEntry] = ()) -> None:
        self.chat = kind == "chat"
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model
        self.logprobs = logprobs
        self.echo = echo
        self.echo_entries = list(echo_entries)
        self._offsets: dict[int, int] = {}  # per choice, characters of text sent so far (the legacy text_offset)

    def _chat_logprobs(self, entries: Sequence[TokenEntry]) -> ChatLogprobs | None:
        return self.logprobs.chat(entries) if self.logprobs is not None and entries else None

    def _text_logprobs(self, entries: Sequence[TokenEntry], text: str, index: int) -> TextLogprobs | None:
        offset = self._offsets.get(index, 0)
        out = self.logprobs.text(entries, offset) if self.logprobs is not None and entries else None
        self._offsets[index] = offset + len(text)
        return out

    def _ids(self, degraded: bool = False) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "model": self.model,
                "system_fingerprint": DEGRADED_FINGERPRINT if degraded else None}

    def full(self, choices: Sequence[ChoiceResult]) -> ChatCompletion | TextCompletion:
        """The whole response; ``tandem`` holds the statistics of choice 0 (the others' are logged)."""
        finished = [c.finished for c in choices]
        ids = self._ids(any(f.degraded for f in finished))
        usage, stats = Usage.of(finished), finished[0].stats
        if self.chat:
            return ChatCompletion(**ids, usage=usage, tandem=stats, choices=[
                ChatChoice(index=i, message=ChatMessageOut(
                    content=c.text, tool_calls=[ToolCallOut.model_validate(t) for t in c.tool_calls]
                    if c.tool_calls else None), logprobs=self._chat_logprobs(c.entries),
                    finish_reason=c.finish_reason, token_ids=_ids_of(c.finished.token_ids))
                for i, c in enumerate(choices)])
        text_choices = []
        for i, c in enumerate(choices):
            self._offsets[i] = 0 if self.echo_entries else len(self.echo)
            text = c.text or ""
            text_choices.append(TextChoice(index=i, text=self.echo + text, finish_reason=c.finish_reason,
                                           logprobs=self._text_logprobs([*self.echo_entries, *c.entries], text, i),
                                           token_ids=_ids_of(c.finished.token_ids)))
        return TextCompletion(**ids, usage=usage, tandem=stats, choices=text_choices)

    def chunk(self, text: str | None, finish: str | None = None, first: bool = False,
              stats: Stats | None = None, degraded: bool = False, entries: Sequence[TokenEntry] = (),
              index: int = 0, calls: Sequence[CallDelta] = (), token_ids: Sequence[int] | None = None) -> Chunk:
        """A stream chunk; one of degraded output says so (``tandem.degraded``, the fingerprint).
        The first chunk of an echoed completion carries the prompt; ``token_ids``: a choice's
        output token ids (its last chunk, when the request asked)."""
        degraded = degraded or bool(stats and stats.get("degraded"))
        tandem: Stats | None = stats
        if tandem is None and degraded:
            tandem = {"degraded": True}
        if self.chat:
            delta = ChatDelta(role="assistant" if first else None, content=text,
                              tool_calls=[ToolCallDeltaOut.of(d) for d in calls] if calls else None)
            return ChatCompletionChunk(**self._ids(degraded), tandem=tandem, choices=[
                ChatChunkChoice(index=index, delta=delta, logprobs=self._chat_logprobs(entries),
                                finish_reason=finish, token_ids=_ids_of(token_ids))])
        text = (self.echo if first else "") + (text or "")
        if first and self.echo_entries:
            entries = [*self.echo_entries, *entries]
        return TextCompletion(**self._ids(degraded), tandem=tandem,
                              choices=[TextChoice(index=index, text=text, finish_reason=finish,
                                                  logprobs=self._text_logprobs(entries, text, index),
                                                  token_ids=_ids_of(token_ids))])

    def usage_chunk(self, finished: Sequence[Finished]) -> Chunk:
        """The final chunk of a stream with include_usage: no choices, the usage of them all."""
        ids = self._ids(any(f.degraded for f in finished))
        if self.chat:
            return ChatCompletionChunk(**ids, choices=[], usage=Usage.of(finished))
        return TextCompletion(**ids, choices=[], usage=Usage.of(finished))
