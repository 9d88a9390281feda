"""What the engine refuses before any work (EngineError 400): requests it cannot read, sampling
this backend cannot verify, grammars it cannot compile, rounds out of bounds."""

from __future__ import annotations

from verifier.core.codec import decode_proposals
from verifier.core.grammar import Constraint, GrammarCompiler, GrammarError
from verifier.core.protocol import (
    GrammarParams,
    ModelInfo,
    SamplingParams,
    SessionCreate,
    unverifiable,
    whole_rows_reasons,
)
from verifier.core.sampling import SparseDist
from verifier.core.wire import MAX_ROUND_DRAFTS, PROTOCOL_VERSION, Round
from verifier.engine.state import EngineError


def check_request(info: ModelInfo, protocol_version: int, prompt_token_ids: list[int],
                  sampling: SamplingParams) -> None:
    if protocol_version != PROTOCOL_VERSION:
        raise EngineError(400, f"unsupported protocol_version {protocol_version}", "bad_protocol")
    if any(t < 0 or t >= info.vocab_size for t in prompt_token_ids):
        raise EngineError(400, "prompt token id outside the vocabulary", "invalid_token")
    if any(t < 0 or t >= info.vocab_size for t in sampling.token_ids_named()):
        raise EngineError(400, "logit_bias or stop_token_ids name a token outside the vocabulary",
                          "invalid_token")
    if len(prompt_token_ids) >= info.max_context:
        raise EngineError(400, "prompt fills the target's context", "context_length_exceeded")


def check_session(info: ModelInfo, req: SessionCreate) -> list[tuple[str, str]]:
    """Refuse a session this backend's rows cannot verify; else why its rounds need whole rows
    (``whole_rows_reasons``; none: plain greedy)."""
    check_request(info, req.protocol_version, req.prompt_token_ids, req.sampling)
    reasons = whole_rows_reasons(req.sampling, req.logprobs, req.grammar)
    refused = unverifiable(req.sampling, req.logprobs, req.grammar, verifies_sampled=info.verifies_sampled,
                           rows_are_logits=info.rows_are_logits, reasons=reasons)
    if refused is not None:
        raise EngineError(400, f"the {info.backend} backend cannot check this session's drafts: {refused.why}; "
                          "cloud-only decoding on this backend is the backend's own", refused.code)
    return reasons


def compile_constraint(grammars: GrammarCompiler | None, grammar: GrammarParams | None) -> Constraint | None:
    """The grammar a session's output must match, compiled over the target's vocabulary."""
    if grammar is None:
        return None
    if grammars is None:
        raise EngineError(400, "this verifier has no tokenizer to compile grammars with (its model directory "
                          "holds no tokenizer.json)", "unsupported_grammar")
    try:
        return grammars.compile(grammar.spec())
    except GrammarError as exc:
        raise EngineError(400, f"grammar rejected: {exc}", "invalid_grammar") from exc


def check_round(info: ModelInfo, sampling: SamplingParams, r: Round) -> list[SparseDist] | None:
    """A round's drafts and proposals within bounds, for a session sampling with ``sampling``;
    its proposals (None where it carries none)."""
    vocab = info.vocab_size
    drafted = len(r.draft_token_ids)
    if drafted > MAX_ROUND_DRAFTS:
        raise EngineError(400, f"a round carries at most {MAX_ROUND_DRAFTS} draft tokens", "invalid_round")
    if any(t < 0 or t >= vocab for t in r.draft_token_ids):
        raise EngineError(400, "draft token id outside the vocabulary", "invalid_token")
    try:
        proposals = decode_proposals(r)
        if proposals is not None:
            if len(proposals) != drafted:
                raise ValueError("one proposal per draft token is required")
            if sampling.temperature == 0:
                raise ValueError("proposals are meaningless for a greedy session")
            for dist in proposals:
                dist.validate(vocab)
    except ValueError as exc:
        raise EngineError(400, str(exc), "invalid_proposal") from exc
    if r.start + drafted >= info.max_context:
        raise EngineError(400, "round would exceed the target's context", "context_length_exceeded")
    return proposals
