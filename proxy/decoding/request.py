"""One request as the loops see it: what to generate (``GenerationRequest``) and what it cost
(``GenerationStats``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from proxy.decoding.pipeline import PipelinePolicy
from proxy.draft.draws import DraftSampling
from proxy.rounds.trigger import DraftTrigger
from proxy.rounds.tuning import ThresholdTuner
from proxy.rounds.upload_plan import UploadPlanner
from verifier.core.grammar import Constraint
from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import Generation, whole_rows_reasons

#: a request's ``tandem`` statistics as they reach the client (``GenerationStats.as_dict``)
Stats = dict[str, bool | float | int | str]


@dataclass
class GenerationStats:
    """Per-request counters, named as in the glossary (docs/architecture.md);
    ``verify_compute_s`` sums the verifier's ``compute_ms``."""

    mode: str
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    rejections: int = 0  # rounds that ended on a rejected draft token
    live_rounds: int = 0  # verify rounds scored by the verifier's live route (vLLM's own spec decoding)
    rows_rounds: int = 0  # verify rounds scored on the verifier's row route (``rounds`` also counts cloud chunks)
    stale_rounds: int = 0  # rounds answered stale (drafted on a token that was then rejected)
    wasted: int = 0  # draft tokens drafted that did not become output
    draft_s: float = 0.0
    verify_wait_s: float = 0.0  # time spent waiting for the verifier with nothing else to do
    round_trip_s: float = 0.0  # summed time from sending each round to reading its answer
    verify_compute_s: float = 0.0  # cloud compute reported by the verifier
    bytes_up: int = 0
    bytes_down: int = 0
    paths: list[str] = field(default_factory=list)  # the paths that served it, in order (a resume adds one)
    why: str = ""  # mode auto: the estimates behind the last choice; a forced mode: that mode
    cloud_losses: int = 0  # times the verifier was lost during the request (each one resumed or fell back)
    degraded: bool = False  # the draft model continued alone: the tokens from then on are unverified
    degraded_reason: str = ""
    unverified_tokens: int = 0
    thresholds: tuple[float, float] | None = None  # trigger 'tuned': the last (per_token, cumulative) drafted with
    upload_batches: int = 0  # frames of draft tokens sent up (a round sent in batches counts each)
    prediction_drafted: int = 0  # draft tokens taken from the request's prediction (Predicted Outputs)
    prediction_accepted: int = 0  # of those, the ones the verifier accepted
    shadow_compared: int = 0  # mode auto, greedy: cloud tokens the draft guessed (proxy.decoding.shadow)
    shadow_agreed: int = 0  # of those, the ones it guessed right
    #: when the request asked for logprobs: the target's, one per token the loops yielded, in order
    #: (None for a token the draft model produced alone); the loops extend it before each yield
    logprobs: list[TokenLogprob | None] | None = None

    def took(self, path: str, why: str) -> None:
        """A forced mode's path (mode auto chooses and explains its own in ``adaptive_loop``)."""
        self.paths.append(path)
        self.why = why

    def record_logprobs(self, entries: Sequence[TokenLogprob | None]) -> None:
        if self.logprobs is not None:
            self.logprobs.extend(entries)

    def as_dict(self) -> Stats:
        d: Stats = {
            "mode": self.mode,
            "rounds": self.rounds,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "rejections": self.rejections,
            "acceptance_rate": round(self.accepted / self.drafted, 4) if self.drafted else 0.0,
            "stale_rounds": self.stale_rounds,
            "wasted": self.wasted,
            "draft_ms": round(self.draft_s * 1000, 2),
            "verify_wait_ms": round(self.verify_wait_s * 1000, 2),
            "round_trip_ms": round(self.round_trip_s * 1000, 2),
            "verify_compute_ms": round(self.verify_compute_s * 1000, 2),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
        }
        if self.live_rounds or self.rows_rounds:  # which verifier route scored the verify rounds
            d["live_rounds"], d["rows_rounds"] = self.live_rounds, self.rows_rounds
            d["verifier_route"] = "+".join(r for r, n in (("live", self.live_rounds), ("rows", self.rows_rounds)) if n)
        if self.paths:
            d["path"] = ">".join(self.paths)
            d["why"] = self.why
        if self.thresholds is not None:
            d["threshold_per_token"], d["threshold_cumulative"] = self.thresholds
        if self.upload_batches:
            d["upload_batches"] = self.upload_batches
        if self.prediction_drafted:
            d["prediction_drafted"], d["prediction_accepted"] = self.prediction_drafted, self.prediction_accepted
        if self.shadow_compared:
            d["shadow_compared"], d["shadow_agreed"] = self.shadow_compared, self.shadow_agreed
        if self.cloud_losses:
            d["cloud_losses"] = self.cloud_losses
        if self.degraded:
            d["degraded"] = True
            d["degraded_reason"] = self.degraded_reason
            d["unverified_tokens"] = self.unverified_tokens
        return d


@dataclass(frozen=True)
class GenerationRequest:
    """A request as the loops run it: what the verifier is asked to generate (``generation``: the
    sequence, its sampling, SLO, output start, logprobs and grammar, sent as it is) and how the
    edge produces it."""

    generation: Generation
    max_tokens: int
    stop_token_ids: frozenset[int]
    policy: PipelinePolicy  # when to draft, send a round or wait; its gamma 0 is cloud-only decoding
    trigger: DraftTrigger | None = None  # when a model drafter ends a round early (None: gamma tokens)
    constraint: Constraint | None = None  # the grammar on the edge: the draft's mask (this generation's own)
    tuning: ThresholdTuner | None = None  # trigger 'tuned': the edge's tuner of the dual threshold (not `trigger`)
    upload: UploadPlanner | None = None  # stop-and-wait rounds go up in batches as drafted, by this plan
    reproducible: bool = False  # a seeded sampled generation: the same seed must give the same output
    prediction: tuple[int, ...] | None = None  # OpenAI Predicted Outputs: tokens drafted where the output follows them
    cloud_resumes: bool = True  # the cloud's own decoding can take it over after some output (``continuation_refusal``)

    @property
    def whole_rows(self) -> bool:
        """Whether its rounds need the target's whole distributions, not only each row's top entry
        (plain greedy): the verifier's rule (``whole_rows_reasons``). A verifier may score such
        rounds at another cost (vLLM's backend: one request per row)."""
        return bool(whole_rows_reasons(self.generation.sampling, self.generation.logprobs, self.generation.grammar))

    def cloud_may_serve(self) -> bool:
        """Whether cloud streaming can serve it from where it stands: from its start always,
        after some output only where the cloud continues it exactly (``cloud_resumes``)."""
        return self.cloud_resumes or self.generation.output_index() == len(self.generation.prompt_token_ids)

    def with_generation(self, **fields: object) -> GenerationRequest:
        """This request with those of its generation's fields changed."""
        return replace(self, generation=self.generation.model_copy(update=fields))

    def continued(self, produced: list[int]) -> GenerationRequest:
        """The request that continues after ``produced``: the same sampling and seed, the produced
        tokens appended to the prompt (still output for the penalties), the budget reduced by them."""
        if not produced:
            return self
        return replace(self.with_generation(prompt_token_ids=[*self.generation.prompt_token_ids, *produced],
                                            output_start=self.generation.output_index()),
                       max_tokens=self.max_tokens - len(produced))

    def draft_sampling(self, proposal_support: int, record_features: bool = False) -> DraftSampling:
        """How the draft model samples for this request: the target's sampling, on the draft's side."""
        sp = self.generation.sampling
        return DraftSampling(sp.temperature, sp.top_p, sp.seed, proposal_support, record_features, top_k=sp.top_k,
                             min_p=sp.min_p, processing=sp.processing(), output_start=self.generation.output_index(),
                             constraint=self.constraint)
