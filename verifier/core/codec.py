"""The frame codec: draft tokens to a ``Round`` frame on the edge, and back on the verifier;
a session's ``Generation`` to its ``Open`` frame and back (``open_frame``, ``session_of``).

Probabilities go out as msgpack float64, bit-exact: the verifier must see exactly the q each
draft token was drawn from, or sampling is not exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import Generation, GrammarParams, SamplingParams, SessionCreate, SloTargets
from verifier.core.sampling import SparseDist
from verifier.core.wire import Grammar, Logprob, Open, Round, Shaping

_SHAPING_FIELDS = Shaping.__struct_fields__


@dataclass(frozen=True)
class DraftToken:
    """One draft token as the edge drafted it: what a ``Round`` frame carries (its id and the q
    it was drawn from), plus what the edge's round triggers and round log read (the rest)."""

    token_id: int
    proposal: SparseDist | None  # the q it was drawn from; None for id-only drafts
    features: tuple[float, float, float] | None = None  # (confidence, entropy, margin) when recorded
    confidence: float | None = None  # the draft model's top-1 probability here (None: a model-free drafter)
    predicted: bool = False  # taken from the request's prediction (OpenAI Predicted Outputs), not drafted


@dataclass(frozen=True)
class SentRound:
    """A round as the edge sent it (``encode_round`` frames it): what its speculation state
    matches the verifier's answer to."""

    seq: int
    epoch: int
    start: int  # absolute position of its first draft token
    drafts: list[DraftToken]


def encode_round(sid: int, seq: int, epoch: int, start: int, drafts: Sequence[DraftToken],
                 held: bool = False) -> Round:
    """The wire form of one round (or of one batch of it: ``held`` when more follow): ids, plus
    one proposal per draft token when sampling.

    Either every draft token carries its proposal or none does (id-only drafts)."""
    qs = [d.proposal for d in drafts if d.proposal is not None]
    if qs and len(qs) != len(drafts):
        raise ValueError("either every draft token of a round carries its proposal or none does")
    return Round(sid=sid, seq=seq, epoch=epoch, start=start, draft_token_ids=[d.token_id for d in drafts],
                 proposal_ids=[q.ids.tolist() for q in qs] if qs else None,
                 proposal_probs=[q.probs.tolist() for q in qs] if qs else None, held=held)


def decode_proposals(round_: Round) -> list[SparseDist] | None:
    """The proposals of a round as distributions (validated by the caller against its
    vocabulary); ValueError when ids and probs do not pair up."""
    if round_.proposal_ids is None and round_.proposal_probs is None:
        return None
    if round_.proposal_ids is None or round_.proposal_probs is None \
            or len(round_.proposal_ids) != len(round_.proposal_probs):
        raise ValueError("proposal ids and probs must come together, one pair per draft token")
    return [SparseDist(np.asarray(ids, dtype=np.int64), np.asarray(probs, dtype=np.float64))
            for ids, probs in zip(round_.proposal_ids, round_.proposal_probs)]


def open_frame(sid: int, gen: Generation, reproducible: bool = False) -> Open:
    """A session's ``Open`` frame: the one place the edge writes the wire's "none" conventions
    (``tpot_ms``/``ttft_ms``/``output_start`` 0, ``logprobs`` -1, no ``shaping`` when neutral)."""
    slo = gen.slo
    return Open(sid=sid, prompt_token_ids=gen.prompt_token_ids, temperature=gen.sampling.temperature,
                top_p=gen.sampling.top_p, seed=gen.sampling.seed, tpot_ms=(slo.tpot_ms or 0.0) if slo else 0.0,
                ttft_ms=(slo.ttft_ms or 0.0) if slo else 0.0, output_start=gen.output_start or 0,
                shaping=_shaping_of(gen.sampling), logprobs=-1 if gen.logprobs is None else gen.logprobs,
                grammar=_grammar_to_wire(gen.grammar), reproducible=reproducible)


def session_of(frame: Open) -> SessionCreate:
    """An ``Open`` frame's session parameters, validated (raises pydantic's ValidationError):
    the one place the verifier reads the wire's "none" conventions (``open_frame``'s)."""
    slo = SloTargets.given(frame.tpot_ms or None, frame.ttft_ms or None)
    return SessionCreate(prompt_token_ids=frame.prompt_token_ids, sampling=_sampling_of(frame), slo=slo,
                         output_start=frame.output_start or None,
                         logprobs=frame.logprobs if frame.logprobs >= 0 else None,
                         grammar=_grammar_from_wire(frame.grammar), reproducible=frame.reproducible)


def _shaping_of(sampling: SamplingParams) -> Shaping | None:
    """The rarer sampling fields for an ``Open`` frame; None when all are neutral."""
    if not sampling.shapes_logits:
        return None
    return Shaping(**{name: getattr(sampling, name) for name in _SHAPING_FIELDS})


def _sampling_of(frame: Open) -> SamplingParams:
    """An ``Open`` frame's sampling, validated (raises pydantic's ValidationError)."""
    shaping = {name: getattr(frame.shaping, name) for name in _SHAPING_FIELDS} if frame.shaping else {}
    return SamplingParams(temperature=frame.temperature, top_p=frame.top_p, seed=frame.seed, **shaping)


def _grammar_to_wire(grammar: GrammarParams | None) -> Grammar | None:
    return Grammar(grammar.kind, grammar.text, grammar.stop_token_ids) if grammar is not None else None


def _grammar_from_wire(frame: Grammar | None) -> GrammarParams | None:
    """An ``Open`` frame's grammar, validated (raises pydantic's ValidationError)."""
    if frame is None:
        return None
    return GrammarParams.model_validate({"kind": frame.kind, "text": frame.text,
                                         "stop_token_ids": frame.stop_token_ids})


def logprobs_to_wire(logprobs: Sequence[TokenLogprob]) -> list[Logprob]:
    return [Logprob(t.token_id, t.logprob, [i for i, _ in t.top], [lp for _, lp in t.top]) for t in logprobs]


def logprobs_from_wire(frames: Sequence[Logprob]) -> list[TokenLogprob]:
    return [TokenLogprob(f.token_id, f.logprob, tuple(zip(f.top_ids, f.top_logprobs))) for f in frames]

