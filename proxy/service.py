"""The edge's serving object: builds prompts, checks limits, runs a decoding loop and
turns committed tokens into text events. Routes in app.py only translate to HTTP/SSE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from proxy.chat_template import ChatTemplate, ChatTemplateError
from proxy.decoding import GenerationRequest, GenerationStats, cloud_loop, draft_loop, speculative_loop
from proxy.draft.base import Drafter
from proxy.errors import OpenAIError, bad_request, verifier_unavailable
from proxy.openai_schema import ChatCompletionRequest, CompletionRequest, SamplingFields
from proxy.settings import EdgeSettings, Mode
from proxy.textstream import TextStream
from proxy.tokenizer import Tokenizer
from proxy.verifier_client import VerifierClient, VerifierRejected, VerifierUnavailable

log = logging.getLogger(__name__)

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy completions endpoint


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    stats: dict[str, float | int | str]


Event = TextDelta | Finished


@dataclass(frozen=True)
class PreparedRequest:
    gen: GenerationRequest
    mode: Mode
    stop: list[str]


class EdgeService:
    def __init__(
        self, settings: EdgeSettings, tokenizer: Tokenizer, drafters: list[Drafter], client: VerifierClient
    ) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.client = client
        self.template = ChatTemplate(tokenizer.chat_template, tokenizer.bos_text, tokenizer.eos_text)
        self.standalone = all(d.standalone for d in drafters)
        self._drafters: asyncio.Queue[Drafter] = asyncio.Queue()
        for d in drafters:
            self._drafters.put_nowait(d)
        self.verifier_max_context: int | None = None
        self.created = int(time.time())

    @property
    def model_id(self) -> str:
        return self.settings.served_model_name

    async def check_verifier(self) -> bool:
        """Fetch the verifier's info; refuse a verifier with another vocabulary."""
        try:
            info = await self.client.info()
        except (VerifierUnavailable, VerifierRejected):
            return False
        if info.vocab_size != self.tokenizer.vocab_size:
            raise OpenAIError(
                502, f"the verifier's model has a vocabulary of {info.vocab_size} tokens, the edge's draft "
                f"{self.tokenizer.vocab_size}: they cannot work together", "server_error", None, "model_mismatch")
        self.verifier_max_context = info.max_context
        return True

    async def ensure_verifier_known(self, mode: Mode) -> None:
        """Learn the verifier's limits once (an edge may start before its verifier)."""
        if self.verifier_max_context is None and mode != "draft":
            await self.check_verifier()

    def context_limit(self) -> int:
        limit = self.settings.n_ctx
        if self.verifier_max_context:
            limit = min(limit, self.verifier_max_context)
        return limit

    # ---- request -> prepared generation ------------------------------------------------
    def check_model(self, model: str) -> None:
        if model != self.model_id:
            raise OpenAIError(404, f"The model `{model}` does not exist.", "invalid_request_error", "model",
                              "model_not_found")

    def chat_prompt(self, req: ChatCompletionRequest) -> list[int]:
        messages = []
        for m in req.messages:
            role = "system" if m.role == "developer" else m.role
            if m.content is None:
                raise bad_request("messages: every message needs content", "messages")
            messages.append({"role": role, "content": m.text()})
        try:
            text = self.template.render(messages, add_generation_prompt=True)
        except ChatTemplateError as exc:
            raise bad_request(str(exc), "messages") from exc
        return self.tokenizer.encode(text, special=True, add_bos=self.tokenizer.add_bos)

    def text_prompt(self, req: CompletionRequest) -> list[int]:
        ids = self.tokenizer.encode(req.prompt_text(), special=True)
        if not ids:
            raise bad_request("prompt must not be empty", "prompt")
        return ids

    def mode_of(self, req: SamplingFields) -> Mode:
        return req.tandem.mode if req.tandem and req.tandem.mode else self.settings.mode

    def prepare(self, req: SamplingFields, prompt_ids: list[int], default_max: int | None) -> PreparedRequest:
        self.check_model(req.model)
        limit = self.context_limit()
        room = limit - len(prompt_ids)
        if room <= 0:
            raise bad_request(
                f"This model's maximum context length is {limit} tokens. However, your prompt is "
                f"{len(prompt_ids)} tokens long.", "messages", "context_length_exceeded")
        requested = req.token_limit()
        max_tokens = requested if requested is not None else (default_max or room)
        if max_tokens > room:
            if requested is not None:
                raise bad_request(
                    f"This model's maximum context length is {limit} tokens. However, you requested "
                    f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the prompt, {max_tokens} for "
                    f"the completion).", "max_tokens", "context_length_exceeded")
            max_tokens = room
        temperature = 1.0 if req.temperature is None else req.temperature
        top_p = 1.0 if req.top_p is None else req.top_p
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        if seed < 0:
            seed &= (1 << 63) - 1
        opts = req.tandem
        mode = self.mode_of(req)
        gamma = opts.gamma if opts and opts.gamma is not None else self.settings.gamma
        threshold = (opts.confidence_threshold if opts and opts.confidence_threshold is not None
                     else self.settings.confidence_threshold)
        if mode == "draft" and not self.standalone:
            raise bad_request(f"mode 'draft' needs a draft model; this edge drafts with {self.settings.drafter!r}",
                              "tandem.mode", "unsupported_mode")
        if opts and opts.confidence_threshold and not self.standalone:
            raise bad_request(f"confidence_threshold needs a draft model's probabilities; this edge drafts with "
                              f"{self.settings.drafter!r}", "tandem.confidence_threshold", "unsupported_parameter")
        gen = GenerationRequest(
            prompt_token_ids=prompt_ids,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            gamma=gamma,
            stop_token_ids=self.tokenizer.stop_token_ids,
            confidence_threshold=threshold,
        )
        return PreparedRequest(gen=gen, mode=mode, stop=req.stop_list())

    # ---- generation --------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _drafter(self) -> AsyncIterator[Drafter]:
        drafter = await self._drafters.get()
        try:
            yield drafter
        finally:
            self._drafters.put_nowait(drafter)

    async def generate(self, prep: PreparedRequest) -> AsyncIterator[Event]:
        """Text deltas then one Finished. Raises OpenAIError for failures."""
        gen = prep.gen
        stats = GenerationStats(mode=prep.mode)
        stream = TextStream(prep.stop)
        produced = 0
        reason = "length"
        t0 = time.perf_counter()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if prep.mode == "cloud":
                    tokens = cloud_loop(gen, self.client, stats)
                else:
                    drafter = await stack.enter_async_context(self._drafter())
                    if prep.mode == "draft":
                        tokens = draft_loop(gen, drafter, stats)
                    else:
                        tokens = speculative_loop(gen, drafter, self.client, stats, self.settings.proposal_support)
                stack.push_async_callback(tokens.aclose)
                async for new in tokens:
                    done = False
                    for tok in new:
                        if produced >= gen.max_tokens:
                            done = True
                            break
                        produced += 1
                        if tok in gen.stop_token_ids:
                            reason, done = "stop", True
                            break
                        text = stream.push(self.tokenizer.token_bytes([tok]))
                        if text:
                            yield TextDelta(text)
                        if stream.stopped:
                            reason, done = "stop", True
                            break
                    if done or produced >= gen.max_tokens:
                        break
        except VerifierUnavailable as exc:
            raise verifier_unavailable(str(exc)) from exc
        except VerifierRejected as exc:
            raise OpenAIError(502, f"verifier refused the request: {exc}", "server_error", None,
                              "verifier_error") from exc
        tail = stream.finish()
        if tail:
            yield TextDelta(tail)
        out = stats.as_dict()
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        log.info("request finished", extra={"tokens": produced, "reason": reason, **out})
        yield Finished(reason, len(gen.prompt_token_ids), produced, out)
