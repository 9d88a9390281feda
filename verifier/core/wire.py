"""The verify protocol, version 2: compact frames on one persistent channel per edge.

One WebSocket connection (subprotocol ``tandem.verify.v2``) carries the sessions of many
requests; each binary message is one frame, a msgpack array ``[tag, fields...]``
(msgspec ``array_like`` structs: no field names on the wire). Documented in
docs/verify-api.md; words as defined in docs/architecture.md#glossary.

Sessions are numbered by the edge (``sid``, unique per connection), so opening one costs no
round trip: ``Open`` and the first ``Round`` go out back to back. Rounds of a session are
numbered by the edge (``seq``) and may be in flight several at once; each says at which
absolute position its draft tokens start (``start``) and on which *epoch* of the session it
was drafted. The epoch counts the times the verified sequence parted from what the edge had
sent: both sides advance it by the same rule (``parts_from_sent``), so a round drafted on a
rejected token is recognised by its old epoch and answered ``Stale`` without computing.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

PROTOCOL_VERSION = 2
SUBPROTOCOL = f"tandem.verify.v{PROTOCOL_VERSION}"
#: the most draft tokens one round may carry
MAX_ROUND_DRAFTS = 64


class _Frame(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    pass


# ---- edge -> verifier ------------------------------------------------------------------------
class Shaping(_Frame):
    """The rarer sampling fields of an ``Open`` (``SamplingParams``), sent only when set."""

    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = msgspec.field(default_factory=dict)
    min_tokens: int = 0
    stop_token_ids: list[int] = msgspec.field(default_factory=list)


class Grammar(_Frame):
    """A grammar the output must match (``verifier.core.grammar.GrammarSpec``)."""

    kind: str
    text: str
    stop_token_ids: list[int]


class Open(_Frame, tag=1):
    """Start a session: prefill the prompt. Sampling and SLO fields as in ``SessionCreate``
    (``tpot_ms``/``ttft_ms`` 0: the verifier's defaults; ``output_start`` 0: none)."""

    sid: int
    prompt_token_ids: list[int]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    tpot_ms: float = 0.0
    ttft_ms: float = 0.0
    output_start: int = 0
    shaping: Shaping | None = None  # None: no penalties, bias, min_tokens, top_k or min_p (one byte)
    logprobs: int = -1  # the target's logprobs of each verified token with this many alternatives (-1: none)
    grammar: Grammar | None = None  # what the output must match (constrained decoding)
    reproducible: bool = False  # a seeded sampled generation: its output must repeat for the same seed


class Round(_Frame, tag=2):
    """Draft tokens for positions ``start .. start + len(draft_token_ids) - 1`` of the sequence.

    ``proposal_ids``/``proposal_probs``: one sparse q per draft token when sampling (None:
    id-only drafts, treated as one-hot). A round with no draft tokens asks for one token of
    plain target decoding; it may only be sent when no other round of its session is in flight.

    A round may go up in several frames (PipeSD's token-batch upload): every frame but the last
    says ``held``; the verifier keeps the batches, which must follow each other (same ``seq`` and
    ``epoch``, each ``start`` where the previous batch ended), and scores the round when its last
    frame arrives. A held batch that a frame of another round follows is dropped."""

    sid: int
    seq: int
    epoch: int
    start: int
    draft_token_ids: list[int]
    proposal_ids: list[list[int]] | None = None
    proposal_probs: list[list[float]] | None = None
    held: bool = False  # more batches of this round follow: keep it, do not score it yet


class Close(_Frame, tag=3):
    """End a session; rounds of it still queued are dropped. No answer."""

    sid: int


# ---- verifier -> edge ------------------------------------------------------------------------
class Logprob(_Frame):
    """The target's log-probability of one verified token, and its position's best alternatives."""

    token_id: int
    logprob: float
    top_ids: list[int] = msgspec.field(default_factory=list)
    top_logprobs: list[float] = msgspec.field(default_factory=list)


class Verified(_Frame, tag=11):
    """A round's outcome: the first ``accepted`` draft tokens are verified, then
    ``next_token_id`` (the recovered or bonus token); ``committed_tokens`` = prompt + verified
    output now. ``compute_us``: model time of the pass that scored it (shared with the other
    rounds of its batch); ``queue_us``: time it waited for that pass."""

    sid: int
    seq: int
    accepted: int
    next_token_id: int
    committed_tokens: int
    compute_us: int
    queue_us: int
    logprobs: list[Logprob] | None = None  # one per token verified by this round, when the session asked
    live: bool = False  # scored by the verifier backend's live route (inside its own engine), not by rows


class Stale(_Frame, tag=12):
    """The round was drafted on a token that is no longer the verified one: not computed."""

    sid: int
    seq: int


class Failed(_Frame, tag=13):
    """A session's open (``seq`` 0) or round was refused; the session is gone on the verifier.
    ``status``/``code`` as the HTTP API's errors; ``retry_after_ms`` > 0 when retrying may work."""

    sid: int
    seq: int
    status: int
    code: str
    message: str
    retry_after_ms: int = 0


class ChannelError(_Frame, tag=14):
    """The connection itself is refused (protocol version, malformed frame); it is closed next."""

    code: str
    message: str


EdgeFrame = Open | Round | Close
VerifierFrame = Verified | Stale | Failed | ChannelError

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()
_edge_decoder = msgspec.msgpack.Decoder(EdgeFrame)
_verifier_decoder = msgspec.msgpack.Decoder(VerifierFrame)


class FrameError(ValueError):
    """Bytes that are not a frame of this protocol version."""


def encode(frame: EdgeFrame | VerifierFrame) -> bytes:
    return _encoder.encode(frame)


def _decode(decoder: msgspec.msgpack.Decoder[T], data: bytes) -> T:
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise FrameError(str(exc)) from exc


def decode_edge_frame(data: bytes) -> EdgeFrame:
    """A frame an edge sent (raises FrameError)."""
    frame: EdgeFrame = _decode(_edge_decoder, data)
    return frame


def decode_verifier_frame(data: bytes) -> VerifierFrame:
    """A frame the verifier sent (raises FrameError)."""
    frame: VerifierFrame = _decode(_verifier_decoder, data)
    return frame


def joined(first: Round, batch: Round) -> Round | None:
    """``batch`` appended to the held batches ``first`` of the same round, or None when it does
    not continue them (another round, another epoch, not where they ended, or proposals on one
    side only)."""
    if (batch.sid, batch.seq, batch.epoch) != (first.sid, first.seq, first.epoch) \
            or batch.start != first.start + len(first.draft_token_ids) \
            or (first.proposal_ids is None) != (batch.proposal_ids is None) \
            or (first.proposal_probs is None) != (batch.proposal_probs is None):
        return None
    return Round(sid=first.sid, seq=first.seq, epoch=first.epoch, start=first.start,
                 draft_token_ids=first.draft_token_ids + batch.draft_token_ids,
                 proposal_ids=None if first.proposal_ids is None or batch.proposal_ids is None
                 else first.proposal_ids + batch.proposal_ids,
                 proposal_probs=None if first.proposal_probs is None or batch.proposal_probs is None
                 else first.proposal_probs + batch.proposal_probs,
                 held=batch.held)


def parts_from_sent(accepted: int, drafted: int, next_token_id: int, next_sent: int | None) -> bool:
    """Whether a verified round ends the epoch it was drafted in.

    It does when a draft token was rejected (``accepted < drafted``), or when all were
    accepted but the round after it was already sent and its first draft token (``next_sent``,
    at the bonus token's position) is not the bonus token. The verifier applies it when it
    scores that next round; the edge when it reads the verified round. Both see the same
    facts, so their epochs agree without a message."""
    if accepted < drafted:
        return True
    return next_sent is not None and next_sent != next_token_id
