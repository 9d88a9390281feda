"""Mode auto: the fastest lossless path by this edge's link estimates, chosen per request and
changed mid-request: speculation hands over to cloud streaming when it falls behind, and cloud
streaming goes back to speculation when the request's own acceptance (shadow drafting) or its
prediction says speculation pays."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace

from proxy.decoding.alone import cloud_loop
from proxy.decoding.context import LoopContext
from proxy.decoding.pipeline import PipelinePolicy
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.decoding.shadow import ShadowDraft
from proxy.decoding.speculative import speculative_loop
from proxy.draft.base import Drafter
from proxy.draft.prediction import PredictionDrafter, PredictionTrigger
from proxy.rounds.rates import Explorer, LinkEstimates, Path, choose, request_alpha


def _why(rates: dict[Path, float] | None, reason: str) -> str:
    if rates is None:
        return reason
    return reason + ": estimated tok/s " + ", ".join(f"{p} {r:.1f}" for p, r in rates.items())


def _speculation(req: GenerationRequest) -> Path:
    """The speculation path ``req.policy`` asks for."""
    return "pipelined" if req.policy.draft_while_waiting else "stop_and_wait"


def _first_path(req: GenerationRequest, prediction: PredictionDrafter | None, gamma: int,
                rates: dict[Path, float] | None, explorer: Explorer, stats: GenerationStats, shadowed: bool
                ) -> tuple[Path, int]:
    """The path a request starts on (its reason in ``stats.why``): speculation while a prediction
    leads, without estimates, when the explorer asks or with nothing to draft; else the fastest.
    With it, the rounds it verifies before it may hand over (the explorer's when it measures).
    A ``shadowed`` request keeps the acceptance current by itself (its shadow guesses while the
    cloud streams), so it is not explored. A request the cloud cannot take over mid-request (``cloud_resumes``) is
    never explored, and starts in the cloud without estimates; one past its start speculates."""
    speculation = _speculation(req)
    if not req.cloud_may_serve():
        stats.why = "the cloud's own decoding cannot continue this output exactly"
        return speculation, 0
    if prediction is not None:  # drafts that cost nothing: speculate while the output follows them
        stats.why = "prediction"
        return speculation, 0
    if not req.cloud_resumes:  # no hand-over later: start where the estimates say, the cloud without them
        stats.why = _why(rates, "fastest, with no hand-over to the cloud later")
        return ("cloud" if rates is None or gamma == 0 else choose(rates, None)), 0
    fastest = None if rates is None else choose(rates, None)
    exploring = not shadowed and fastest is not None and explorer.explore(fastest == "cloud")
    if fastest is None or exploring or gamma == 0:
        stats.why = "no estimates yet" if rates is None else _why(rates, "refreshing the estimates")
        return speculation, explorer.rounds
    stats.why = _why(rates, "fastest")
    return fastest, 0


async def adaptive_loop(
    req: GenerationRequest,
    drafter: Drafter,
    ctx: LoopContext,
    stats: GenerationStats,
    explorer: Explorer,
    rejoin_run: int = 4,
    shadow: bool = True,
) -> AsyncGenerator[list[int], None]:
    """Mode auto: the fastest lossless path by this edge's link estimates (``proxy.rounds.rates``):
    pipelined or stop-and-wait speculation (``req.policy`` gives gamma and the pipeline depth),
    or cloud streaming. Every path continues from the tokens verified before it, so the output
    stays lossless whenever the request turns (``_Turns``). ``ctx`` is both loops' and must
    hold the estimates; ``explorer`` picks the requests that speculate whatever the estimates
    say, to refresh them; ``rejoin_run``: the prediction's tokens the cloud's output must have
    repeated (and as many left ahead) to go back to speculation on it; ``shadow``: a greedy
    request streaming from the cloud drafts in its shadow (``proxy.decoding.shadow``)."""
    estimates = ctx.estimates
    if estimates is None:
        raise ValueError("mode auto chooses by the link estimates: the loop context has none")
    prediction = drafter if isinstance(drafter, PredictionDrafter) else None
    # the draft model's own round size: a prediction's rounds are longer (``proxy.openai.resolve.predicted``)
    gamma = req.trigger.drafted_per_round if isinstance(req.trigger, PredictionTrigger) else req.policy.gamma
    rates = estimates.rates(gamma, req.max_tokens, req.policy.max_inflight)
    # greedy requests without a prediction (one with a prediction goes back to it by the prediction alone)
    shadowing = shadow and req.generation.sampling.temperature == 0 and gamma > 0 and prediction is None
    path, measuring = _first_path(req, prediction, gamma, rates, explorer, stats, shadowing)
    turns = _Turns(req, prediction, gamma, estimates, stats, measuring, rejoin_run)
    produced: list[int] = []
    following: Path | None = path
    while following is not None:
        path, following = following, None
        stats.paths.append(path)
        rest = req.continued(produced)
        guesses = turns.shadow = _shadow(rest, path, drafter, ctx.proposal_support, shadowing, turns.shadow_min)
        if path == "cloud":
            tokens = cloud_loop(rest, ctx, stats)
        else:
            policy = req.policy if path == "pipelined" else PipelinePolicy.stop_and_wait(gamma)
            tokens = speculative_loop(replace(rest, policy=policy), drafter, ctx, stats)
        try:
            async for new in tokens:
                produced.extend(new)
                yield new
                if guesses is not None:
                    guesses.saw(new)
                if (following := turns.after(path, produced)) is not None:
                    break
        finally:
            try:
                await tokens.aclose()
            finally:
                if guesses is not None:
                    await turns.shadowed(guesses)


def _shadow(rest: GenerationRequest, path: Path, drafter: Drafter, proposal_support: int, shadowing: bool,
            shadow_min: int) -> ShadowDraft | None:
    """Shadow drafting for a stretch of cloud streaming, started; None on speculation, when the
    request does not shadow, or with too short a rest to pay a turn."""
    if path != "cloud" or not shadowing or rest.max_tokens < 2 * shadow_min:
        return None
    guesses = ShadowDraft(drafter, rest.draft_sampling(proposal_support), rest.generation.prompt_token_ids)
    guesses.start()
    return guesses


class _Turns:
    """Where a request of mode auto turns, after each batch of tokens on a path:
    - from speculation to the cloud when the estimates say it fell behind, by the request's own
      acceptance (not while a prediction leads, nor before the rounds it measures);
    - from the cloud back to speculation when the output rejoins the prediction (``rejoin_run``
      tokens of it, with as many ahead; doubled after a rejoin whose speculation took fewer of
      the prediction's tokens than that, or fewer than half of the tokens it produced, so a
      prediction that only shares phrases with the output is not taken up again and again:
      each turn costs a round trip and a stretch of the draft's own rounds before it is left),
      or when the request's own acceptance, from shadow drafting (``shadow_min`` guesses at
      least), says speculation is faster."""

    def __init__(self, req: GenerationRequest, prediction: PredictionDrafter | None, gamma: int,
                 estimates: LinkEstimates, stats: GenerationStats, measuring: int, rejoin_run: int,
                 shadow_min: int = 8) -> None:
        self.req, self.prediction, self.gamma = req, prediction, gamma
        self.estimates, self.stats, self.measuring, self.rejoin_run = estimates, stats, measuring, rejoin_run
        self.shadow_min = shadow_min
        # when the output last rejoined the prediction: (prediction tokens accepted, output tokens) then
        self.rejoined_at: tuple[int, int] | None = None
        self.speculation = _speculation(req)
        self.shadow: ShadowDraft | None = None  # the cloud stretch's shadow drafting, while it runs
        self.agreed = 0  # shadow guesses over the request's earlier cloud stretches
        self.missed = 0

    def alpha(self) -> float | None:
        """The request's own per-token acceptance: its rounds' and its shadow guesses', the edge's
        estimate as a prior. None with a prediction (its rounds are the prediction's, not the draft's)."""
        if self.prediction is not None:
            return None
        shadow = self.shadow
        agreed = self.agreed + (shadow.agreed if shadow is not None else 0)
        missed = self.missed + (shadow.missed if shadow is not None else 0)
        return request_alpha(self.estimates.alpha, self.stats.accepted + agreed, self.stats.rejections + missed)

    async def shadowed(self, shadow: ShadowDraft) -> None:
        """A cloud stretch ended: its shadow's guesses join the request's and the edge's estimates."""
        await shadow.close()
        self.agreed, self.missed = self.agreed + shadow.agreed, self.missed + shadow.missed
        self.stats.shadow_agreed, self.stats.shadow_compared = self.agreed, self.agreed + self.missed
        if shadow.compared:
            self.estimates.observe_agreement(shadow.agreed, shadow.missed)
        self.shadow = None

    def after(self, path: Path, produced: list[int]) -> Path | None:
        """The path to turn to now that ``produced`` tokens are out on ``path``; None: stay."""
        left = self.req.max_tokens - len(produced)
        if left <= 0:
            return None
        if path == "cloud":
            return self._back(produced, left)
        prediction, stats = self.prediction, self.stats
        if prediction is not None and not prediction.lost([*self.req.generation.prompt_token_ids, *produced]):
            return None
        if stats.rounds < self.measuring:
            return None
        if not self.req.cloud_resumes:  # the cloud's own decoding cannot continue this output exactly
            return None
        rates = self._rates(left, path)
        if rates is None or choose(rates, path) != "cloud":
            return None
        why = f"{path} fell behind after {len(produced)} tokens"
        stats.why = _why(rates, why if prediction is None else f"the prediction was left; {why}")
        if self.rejoined_at is not None:
            accepted, at = self.rejoined_at
            taken = stats.prediction_accepted - accepted
            if taken < self.rejoin_run or 2 * taken < len(produced) - at:
                self.rejoin_run *= 2  # that rejoin did not pay: the prediction gave under half of what followed
        return "cloud"

    def _back(self, produced: list[int], left: int) -> Path | None:
        prediction, shadow, stats = self.prediction, self.shadow, self.stats
        if prediction is not None:
            if prediction.rejoined([*self.req.generation.prompt_token_ids, *produced], self.rejoin_run):
                stats.why = f"the output rejoined the prediction after {len(produced)} tokens"
                self.rejoined_at = (stats.prediction_accepted, len(produced))
                return self.speculation
            return None
        if shadow is None or shadow.compared < self.shadow_min or left < self.shadow_min:
            return None
        rates = self._rates(left, "cloud")
        if rates is None or (best := choose(rates, "cloud")) == "cloud":
            return None
        stats.why = _why(rates, f"the draft guessed {shadow.agreed} of {shadow.compared} cloud tokens "
                                f"after {len(produced)} tokens")
        return best if self.req.policy.draft_while_waiting else "stop_and_wait"

    def _rates(self, left: int, current: Path) -> dict[Path, float] | None:
        """The paths' rates over the ``left`` tokens, by the request's own acceptance, from ``current``."""
        return self.estimates.rates(self.gamma, left, self.req.policy.max_inflight, self.alpha(), started=current)
