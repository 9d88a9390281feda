"""An OpenAI request plus its prompt, resolved into one generation: limits, sampling, mode.

Every default and every refusal (context too long, a Tandem option this edge cannot honour)
is decided here, before any token is generated.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from proxy.decoding import GenerationRequest
from proxy.errors import bad_request
from proxy.openai_schema import SamplingFields
from proxy.settings import EdgeSettings, Mode
from verifier.core.protocol import SloTargets

_SEED_MASK = (1 << 63) - 1


@dataclass(frozen=True)
class PreparedRequest:
    gen: GenerationRequest
    mode: Mode
    stop: list[str]


def mode_of(req: SamplingFields, settings: EdgeSettings) -> Mode:
    return req.tandem.mode if req.tandem and req.tandem.mode else settings.mode


def max_tokens_for(req: SamplingFields, prompt_tokens: int, context_limit: int, default_max: int | None) -> int:
    """The completion budget: the request's, else the endpoint default, else the room left.
    A request asking for more than the context holds is refused, as OpenAI does."""
    room = context_limit - prompt_tokens
    if room <= 0:
        raise bad_request(
            f"This model's maximum context length is {context_limit} tokens. However, your prompt is "
            f"{prompt_tokens} tokens long.", "messages", "context_length_exceeded")
    requested = req.token_limit()
    if requested is None:
        return min(default_max or room, room)
    if requested > room:
        raise bad_request(
            f"This model's maximum context length is {context_limit} tokens. However, you requested "
            f"{prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, {requested} for "
            f"the completion).", "max_tokens", "context_length_exceeded")
    return requested


def resolve(
    req: SamplingFields,
    prompt_ids: list[int],
    settings: EdgeSettings,
    context_limit: int,
    standalone: bool,
    stop_token_ids: frozenset[int],
    default_max: int | None,
) -> PreparedRequest:
    """The generation a request asks for, with this edge's defaults filled in."""
    opts = req.tandem
    mode = mode_of(req, settings)
    if mode == "draft" and not standalone:
        raise bad_request(f"mode 'draft' needs a draft model; this edge drafts with {settings.drafter!r}",
                          "tandem.mode", "unsupported_mode")
    if opts and opts.confidence_threshold and not standalone:
        raise bad_request(f"confidence_threshold needs a draft model's probabilities; this edge drafts with "
                          f"{settings.drafter!r}", "tandem.confidence_threshold", "unsupported_parameter")
    gen = GenerationRequest(
        prompt_token_ids=prompt_ids,
        max_tokens=max_tokens_for(req, len(prompt_ids), context_limit, default_max),
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        seed=(req.seed & _SEED_MASK) if req.seed is not None else secrets.randbits(63),
        gamma=opts.gamma if opts and opts.gamma is not None else settings.gamma,
        stop_token_ids=stop_token_ids,
        confidence_threshold=(opts.confidence_threshold if opts and opts.confidence_threshold is not None
                              else settings.confidence_threshold),
        slo=(SloTargets(tpot_ms=opts.tpot_slo_ms, ttft_ms=opts.ttft_slo_ms)
             if opts and (opts.tpot_slo_ms or opts.ttft_slo_ms) else None),
    )
    return PreparedRequest(gen=gen, mode=mode, stop=req.stop_list())
