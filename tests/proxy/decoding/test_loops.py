"""The edge's decoding loops against the real verifier engine, in memory (tests/harness.py).
No assertion here reads the wall clock: overlap is counted in rounds out, times come from a
clock the test holds, and threads are waited for by their own counts, never by sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import cast

import msgspec
import pytest

from proxy.cloud.channel import ChannelSession, VerifierChannel
from proxy.cloud.client import VerifierClient
from proxy.decoding.alone import cloud_loop, draft_loop
from proxy.decoding.context import LoopContext
from proxy.decoding.pipeline import PipelinePolicy
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.decoding.speculative import speculative_loop
from proxy.draft.draws import DraftSampling
from proxy.rounds.rates import LinkEstimates
from proxy.rounds.trigger import DualThresholdTrigger
from proxy.rounds.tuning import ThresholdTuner
from proxy.rounds.upload_plan import CostFit, UploadPlanner
from tests.harness import (
    EOS,
    BigramBackend,
    FakeClock,
    Harness,
    LinkFaults,
    ScriptedDrafter,
    V,
    greedy_continuation,
    start,
    until,
)
from verifier.core.codec import DraftToken, SentRound
from verifier.core.protocol import GeneratedTokens, Generation, SamplingParams
from verifier.core.wire import Round, Stale, Verified


def request(prompt: list[int], max_tokens: int, gamma: int = 4, temperature: float = 0.0,
            threshold: float = 0.0, pipelined: bool = False) -> GenerationRequest:
    policy = PipelinePolicy.pipelined(gamma) if pipelined else PipelinePolicy.stop_and_wait(gamma)
    return GenerationRequest(Generation(prompt_token_ids=prompt,
                                        sampling=SamplingParams(temperature=temperature, seed=7)),
                             max_tokens=max_tokens, stop_token_ids=frozenset({EOS}), policy=policy,
                             trigger=DualThresholdTrigger(threshold))


async def settled(h: Harness) -> int:
    """Live verifier sessions once the edge's Close frames have arrived (they are not waited for)."""
    engine = h.verifier.ready_engine()
    for _ in range(100):
        if engine.session_count == 0:
            break
        await asyncio.sleep(0.001)
    return engine.session_count


class HeldAnswers:
    """The verifier channel with every answer held until the loop waits for one: a link far
    slower than the drafter, without a clock. How many rounds the loop has out when it waits is
    then its policy's decision alone; ``waits`` records it at each wait. ``on_answer`` sees every
    answer as it is handed over (a test's fake clock moves on by the round's trip there) and may
    return the answer to hand over instead."""

    def __init__(self, channel: VerifierChannel,
                 on_answer: Callable[[Verified | Stale], Verified | Stale | None] | None = None) -> None:
        self._channel = channel
        self.on_answer = on_answer
        self.waits: list[int] = []  # rounds out at each wait for an answer

    def as_channel(self) -> VerifierChannel:
        """Itself, as the channel the loops take (it has every method they call)."""
        return cast(VerifierChannel, self)

    async def open(self, gen: Generation, reproducible: bool = False) -> HeldSession:
        return HeldSession(await self._channel.open(gen, reproducible), self)


class HeldSession:
    """A channel session whose answers reach the loop only through ``next`` (see HeldAnswers)."""

    def __init__(self, session: ChannelSession, held: HeldAnswers) -> None:
        self._session = session
        self._held = held
        self._out = 0  # rounds sent and not yet answered

    @property
    def bytes_up(self) -> int:
        return self._session.bytes_up

    @property
    def bytes_down(self) -> int:
        return self._session.bytes_down

    def poll(self) -> None:
        return None  # nothing has arrived until the loop waits

    async def send(self, sent: SentRound, uploaded: int = 0) -> None:
        await self._session.send(sent, uploaded)
        self._out += 1

    async def send_held(self, seq: int, epoch: int, start: int, drafts: list[DraftToken]) -> None:
        await self._session.send_held(seq, epoch, start, drafts)

    async def send_round(self, round_: Round) -> None:
        await self._session.send_round(round_)

    async def next(self, timeout_s: float | None = None) -> Verified | Stale:
        self._held.waits.append(self._out)
        answer = await self._session.next(timeout_s)
        self._out -= 1
        if self._held.on_answer is not None:
            answer = self._held.on_answer(answer) or answer  # it may stand in another answer (its timings)
        return answer

    def close(self) -> None:
        self._session.close()


async def collect(loop: AsyncGenerator[list[int], None], limit: int) -> list[int]:
    out: list[int] = []
    try:
        async for new in loop:
            out.extend(new)
            if len(out) >= limit:
                break
    finally:
        await loop.aclose()
    return out[:limit]


def test_speculative_greedy_equals_the_targets_greedy_with_rejections() -> None:
    async def body() -> None:
        h = await start()
        stats = GenerationStats(mode="speculative")
        req = request([1, 2, 3], max_tokens=11)
        out = await collect(speculative_loop(req, h.drafters[0], h.ctx(), stats), 11)
        assert out == greedy_continuation(3, 11)
        # the drafter is wrong at every third position: rounds end on rejections, and recover
        assert stats.rejections > 0 and 0 < stats.accepted < stats.drafted
        assert stats.rounds * 1 + stats.accepted == 11  # each round commits its accepted tokens + one
        assert stats.bytes_up > 0 and stats.bytes_down > 0
        assert await settled(h) == 0  # closing the loop ended the session
        await h.aclose()

    asyncio.run(body())


def test_a_perfect_drafter_commits_gamma_plus_one_per_round() -> None:
    async def body() -> None:
        h = await start()
        h.drafters[0].wrong = lambda p: False
        stats = GenerationStats(mode="speculative")
        out = await collect(speculative_loop(request([4], 10, gamma=4), h.drafters[0], h.ctx(), stats), 10)
        assert out == greedy_continuation(4, 10)
        assert stats.rounds == 2 and stats.accepted == stats.drafted == 8 and stats.rejections == 0
        await h.aclose()

    asyncio.run(body())


def test_gamma_zero_and_cloud_loop_are_plain_target_decoding() -> None:
    async def body() -> None:
        h = await start()
        plain = GenerationStats(mode="speculative")
        out0 = await collect(speculative_loop(request([5], 6, gamma=0), h.drafters[0], h.ctx(), plain), 6)
        cloud = GenerationStats(mode="cloud")
        out1 = await collect(cloud_loop(request([5], 6), h.ctx(), cloud), 6)
        assert out0 == out1 == greedy_continuation(5, 6)
        assert plain.drafted == 0 and plain.rounds == 6 and h.drafters[0].calls == 0
        assert cloud.rounds == 6 and cloud.verify_compute_s > 0
        assert await settled(h) == 0
        await h.aclose()

    asyncio.run(body())


def test_draft_loop_is_the_drafter_alone() -> None:
    async def body() -> None:
        h = await start()
        drafter = ScriptedDrafter(wrong=lambda p: True)  # always successor(successor(prev))
        out = await collect(draft_loop(request([14], 4), drafter, GenerationStats(mode="draft")), 4)
        assert out == [1, 3, 5, 7]
        assert h.backend.extends == 0  # the verifier was never asked
        await h.aclose()

    asyncio.run(body())


def test_sampled_speculation_is_seeded_and_reproducible() -> None:
    async def body() -> None:
        h = await start()
        outs = []
        for _ in range(2):
            stats = GenerationStats(mode="speculative")
            req = request([2, 3], 12, temperature=1.0)
            outs.append(await collect(speculative_loop(req, h.drafters[0], h.ctx(4), stats), 12))
            assert stats.drafted > 0
        assert outs[0] == outs[1] and all(0 <= t < V for t in outs[0])
        await h.aclose()

    asyncio.run(body())


def test_a_verifier_crash_frees_nothing_twice_and_surfaces_to_the_loop() -> None:
    async def body() -> None:
        h = await start(BigramBackend(fail_on_extend=3))  # prefill, round 1, then the crash
        stats = GenerationStats(mode="speculative")
        loop = speculative_loop(request([1, 2], 20), h.drafters[0], h.ctx(), stats)
        got: list[int] = []
        try:
            async for new in loop:
                got.extend(new)
        except Exception as exc:  # noqa: BLE001 - the type is checked below
            error = exc
        else:
            raise AssertionError("the crash did not surface")
        finally:
            await loop.aclose()
        from proxy.cloud.errors import VerifierRejected

        assert isinstance(error, VerifierRejected) and error.status == 500
        assert got == greedy_continuation(2, len(got)) and len(got) > 0
        assert await settled(h) == 0
        await h.aclose()

    asyncio.run(body())


def test_a_requests_latency_targets_reach_its_verifier_session() -> None:
    async def body() -> None:
        from verifier.core.protocol import SloTargets

        h = await start()
        req = GenerationRequest(Generation(prompt_token_ids=[1, 2], slo=SloTargets(tpot_ms=42.0)), max_tokens=3,
                                stop_token_ids=frozenset(), policy=PipelinePolicy.stop_and_wait(2))
        loop = speculative_loop(req, h.drafters[0], h.ctx(), GenerationStats(mode="speculative"))
        await loop.__anext__()
        engine = h.verifier.ready_engine()
        (live,) = [engine.session(sid) for sid in engine.session_ids()]
        assert live.slo.tpot_ms == 42.0 and live.slo.ttft_ms == 5000.0  # the other target: the default
        await loop.aclose()
        await h.aclose()

    asyncio.run(body())


def test_the_round_log_records_what_the_predictor_is_trained_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from proxy.rounds.round_log import RoundLog
    from verifier.core.predictor import labelled_tokens, read_rounds

    async def body() -> None:
        h = await start()
        log = RoundLog(tmp_path / "rounds.jsonl")
        stats = GenerationStats(mode="speculative")
        await collect(speculative_loop(request([1, 2, 3], 12), h.drafters[0], h.ctx(round_log=log), stats), 12)
        log.close()
        rounds = read_rounds(tmp_path / "rounds.jsonl")
        assert 0 < len(rounds) <= stats.rounds  # a last round with no draft tokens is not logged
        assert sum(a for _, a in rounds) == stats.accepted
        assert all(len(f) == 3 for features, _ in rounds for f in features)
        x, y = labelled_tokens(rounds)
        assert y.sum() == stats.accepted and (1 - y).sum() == stats.rejections
        await h.aclose()

    asyncio.run(body())


@pytest.mark.parametrize("faults", [LinkFaults(jitter_s=0.003), LinkFaults(jitter_s=0.003, reorder=True, seed=5)])
def test_pipelined_greedy_equals_the_targets_greedy_through_rejections_and_stale_rounds(faults: LinkFaults) -> None:
    """Answers held until the edge waits: rounds are always drafted and sent on top of rounds
    still out, so those behind a rejected one are stale, whatever the machine's pace."""
    async def body() -> None:
        h = await start(faults=faults)
        stats = GenerationStats(mode="speculative")
        held = HeldAnswers(h.channel)
        out = await collect(speculative_loop(request([1, 2, 3], 40, pipelined=True), h.drafters[0],
                                             h.ctx(channel=held.as_channel()), stats), 40)
        assert out == greedy_continuation(3, 40)
        # rounds were drafted on top of rounds that then failed: answered stale, never applied
        assert stats.rejections > 0 and stats.stale_rounds > 0 and max(held.waits) > 1
        assert h.verifier.ready_engine().stats.stale_rounds >= stats.stale_rounds
        assert await settled(h) == 0
        await h.aclose()

    asyncio.run(body())


@pytest.mark.parametrize(("pipelined", "out"), [(True, 3), (False, 1)])
def test_pipelined_rounds_overlap_their_verification(pipelined: bool, out: int) -> None:
    """A perfect drafter with a slow link (answers held until the edge waits): pipelined, the
    edge waits with its whole pipeline out, three rounds, so every wait serves rounds whose trips
    overlapped; stop-and-wait, one."""
    async def body() -> None:
        h = await start(faults=LinkFaults(jitter_s=0.003, seed=1))
        h.drafters[0].wrong = lambda p: False
        stats = GenerationStats(mode="speculative")
        held = HeldAnswers(h.channel)
        tokens = await collect(speculative_loop(request([4], 30, gamma=2, pipelined=pipelined), h.drafters[0],
                                                h.ctx(channel=held.as_channel()), stats), 30)
        assert tokens == greedy_continuation(4, 30)
        assert stats.stale_rounds == 0 and stats.rejections == 0
        assert len(held.waits) == stats.rounds and max(held.waits) == out
        assert held.waits[:stats.rounds - 2] == [out] * (stats.rounds - 2)  # until the last rounds near the end
        await h.aclose()

    asyncio.run(body())


class TimedDrafter(ScriptedDrafter):
    """A scripted drafter whose every draft call takes ``draft_s`` on ``clock``."""

    def __init__(self, clock: FakeClock, draft_s: float, wrong: Callable[[int], bool]) -> None:
        super().__init__(wrong=wrong)
        self.clock, self.draft_s = clock, draft_s

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        self.clock.now += self.draft_s
        return super().draft(context, sampling)


def timed_rounds(clock: FakeClock, verifier_s: float, link_s: float) -> Callable[[Verified | Stale], Verified | Stale]:
    """HeldAnswers' ``on_answer``: every round took ``verifier_s`` in the verifier (as it reports)
    and ``link_s`` more on the link, on ``clock``."""

    def on_answer(answer: Verified | Stale) -> Verified | Stale:
        clock.now += verifier_s + link_s
        if isinstance(answer, Verified):
            return msgspec.structs.replace(answer, compute_us=round(verifier_s * 1e6), queue_us=0)
        return answer

    return on_answer


class TimedClient:
    """The verifier client with every streamed token taking ``step_s`` (as the verifier reports it,
    and on ``clock``): cloud streaming at a known speed."""

    def __init__(self, client: VerifierClient, clock: FakeClock, step_s: float) -> None:
        self._client, self.clock, self.step_s = client, clock, step_s

    @property
    def bytes_up(self) -> int:
        return self._client.bytes_up

    @property
    def bytes_down(self) -> int:
        return self._client.bytes_down

    async def generate(self, gen: Generation, max_tokens: int, stop_token_ids: list[int]
                       ) -> AsyncGenerator[GeneratedTokens, None]:
        async for chunk in self._client.generate(gen, max_tokens, stop_token_ids):
            self.clock.now += self.step_s * len(chunk.token_ids)
            yield chunk.model_copy(update={"compute_ms": self.step_s * 1000 * len(chunk.token_ids)})

    def as_client(self) -> VerifierClient:
        return cast(VerifierClient, self)


def test_auto_hands_over_to_the_cloud_when_speculation_falls_behind() -> None:
    """A drafter that is always wrong (10 ms a draft) over a link of 50 ms, a 5 ms verifier: a few
    rounds in, the estimates say cloud streaming (5 ms a token) is faster; the rest comes from the
    cloud, continuing the verified tokens. Every time is on the test's clock, and the margin is
    several-fold, so the decision is the same on any machine."""
    from proxy.decoding.adaptive import adaptive_loop
    from proxy.rounds.rates import Explorer, LinkEstimates

    async def body() -> None:
        h = await start()
        clock = FakeClock()
        drafter = TimedDrafter(clock, 0.01, wrong=lambda p: True)
        channel = HeldAnswers(h.channel, timed_rounds(clock, 0.005, 0.05)).as_channel()
        client = TimedClient(h.client, clock, 0.005).as_client()
        estimates = LinkEstimates()
        explorer = Explorer(every=2, rounds=6)
        req = request([1, 2], 40, pipelined=True)

        async def run(stats: GenerationStats, shadow: bool = False) -> list[int]:
            return await collect(adaptive_loop(req, drafter, LoopContext(channel, client, 16, estimates, clock=clock),
                                               stats, explorer, shadow=shadow), 40)

        stats = GenerationStats(mode="auto")
        assert await run(stats) == greedy_continuation(2, 40)
        assert stats.paths == ["pipelined", "cloud"] and "fell behind" in stats.why
        assert stats.rounds > 0 and stats.drafted > 0 and stats.rejections > 0
        rates = estimates.rates(4, 40)
        assert rates is not None and rates["cloud"] > 2 * rates["pipelined"]
        # the next request starts in the cloud; every explore_every-th (here the 2nd) still speculates
        again = GenerationStats(mode="auto")
        assert await run(again) == greedy_continuation(2, 40)
        assert again.paths == ["cloud"] and again.drafted == 0
        explored = GenerationStats(mode="auto")
        assert await run(explored) == greedy_continuation(2, 40)
        assert explored.paths[0] == "pipelined" and explored.drafted > 0
        # a greedy request guessed in the shadow keeps the acceptance current itself: never explored
        for _ in range(2):
            shadowed = GenerationStats(mode="auto")
            assert await run(shadowed, shadow=True) == greedy_continuation(2, 40)
            assert shadowed.paths == ["cloud"] and shadowed.drafted == 0
        assert explorer.streak == 0  # nor counted towards the next exploration
        await h.aclose()

    asyncio.run(body())


def test_a_request_the_cloud_cannot_continue_is_never_handed_to_it_mid_request() -> None:
    """vLLM's own decoding cannot continue a generation with presence/frequency penalties or a
    grammar after some output (``continuation_refusal``): such a request (``cloud_resumes``
    False) keeps speculating where another hands over, starts in the cloud where the estimates
    say so (never explored), and one resumed after some output speculates whatever they say.
    The drafter is always wrong (10 ms a draft) over a 50 ms link; a cloud step is 5 ms."""
    from proxy.decoding.adaptive import adaptive_loop
    from proxy.rounds.rates import Explorer

    async def body() -> None:
        h = await start()
        clock = FakeClock()
        drafter = TimedDrafter(clock, 0.01, wrong=lambda p: True)
        channel = HeldAnswers(h.channel, timed_rounds(clock, 0.005, 0.05)).as_channel()
        ctx = LoopContext(channel, TimedClient(h.client, clock, 0.005).as_client(), 16, LinkEstimates(), clock=clock)
        explorer = Explorer(every=1, rounds=6)  # every request the estimates send to the cloud explores
        kept = replace(request([1, 2], 40, pipelined=True), cloud_resumes=False)
        out = greedy_continuation(2, 40)

        async def run(req: GenerationRequest, n: int = 40) -> GenerationStats:
            stats = GenerationStats(mode="auto")
            assert await collect(adaptive_loop(req, drafter, ctx, stats, explorer, shadow=False), n) == out[40 - n:]
            return stats

        handed = await run(replace(kept, cloud_resumes=True))  # no estimates yet: speculates, falls behind
        assert handed.paths == ["pipelined", "cloud"] and "fell behind" in handed.why
        rates = ctx.estimates.rates(4, 40) if ctx.estimates else None
        assert rates is not None and rates["cloud"] > 2 * rates["pipelined"]
        explored = await run(replace(kept, cloud_resumes=True))
        assert explored.paths[0] == "pipelined" and explored.drafted > 0  # the explorer's pick
        fresh = await run(kept)
        assert fresh.paths == ["cloud"] and "no hand-over" in fresh.why and fresh.drafted == 0  # never explored
        resumed = await run(kept.continued(out[:5]), 35)  # past its start: the cloud cannot take it
        assert resumed.paths == ["pipelined"] and "cannot continue" in resumed.why and resumed.rejections > 10
        await h.aclose()

    asyncio.run(body())


def test_auto_keeps_speculating_while_it_wins() -> None:
    """A drafter right 8 times in 9 (0.5 ms a draft), a 5 ms verifier pass and a 1 ms link, on the
    test's clock: three to five tokens a pass beat one a pass, twice over, so the request never
    hands over. Stop-and-wait, so that every round's trip feeds the estimates (a pipelined round
    does only when it was alone in flight), and the rounds' different lengths give them their
    pass-time line."""
    from proxy.decoding.adaptive import adaptive_loop
    from proxy.rounds.rates import Explorer, LinkEstimates

    async def body() -> None:
        h = await start()
        clock = FakeClock()
        drafter = TimedDrafter(clock, 0.0005, wrong=lambda p: p % 9 == 8)
        channel = HeldAnswers(h.channel, timed_rounds(clock, 0.005, 0.001)).as_channel()
        client = TimedClient(h.client, clock, 0.005).as_client()
        estimates = LinkEstimates()
        stats = GenerationStats(mode="auto")
        out = await collect(adaptive_loop(request([3], 40, pipelined=False), drafter,
                                          LoopContext(channel, client, 16, estimates, clock=clock), stats,
                                          Explorer(every=8, rounds=6)), 40)
        assert out == greedy_continuation(3, 40) and stats.paths == ["stop_and_wait"]
        assert stats.rounds > 3 and stats.rejections > 0
        rates = estimates.rates(4, 40)
        assert rates is not None and rates["stop_and_wait"] > 2 * rates["cloud"]
        await h.aclose()

    asyncio.run(body())


def _cloud_leaning() -> LinkEstimates:
    """An edge's estimates after three rounds with none accepted (0.5 ms a draft, 5 ms a pass
    and a cloud step, 1 ms of link): they send the next request to the cloud."""
    estimates = LinkEstimates()
    for drafted in (4, 1, 4):
        estimates.observe_round(drafted=drafted, accepted=0, trip_s=0.006 + 0.001 * drafted,
                                verifier_s=0.005 + 0.001 * drafted)
    estimates.observe_draft(0.0005)
    estimates.observe_cloud_step(0.005)
    return estimates


def _after_an_unlucky_start(explore_rounds: int) -> tuple[GenerationStats, GenerationStats]:
    """An edge whose estimates say every draft is rejected (three rounds, none accepted) meets a
    drafter wrong on a request's first 4 tokens, then right 8 times in 9 (0.5 ms a draft, 5 ms a
    pass, 1 ms of link): the explored request, then the next one. Pipelined, so most rounds are
    not alone in flight (their acceptance counts, their timings do not)."""
    from proxy.decoding.adaptive import adaptive_loop
    from proxy.rounds.rates import Explorer

    async def body() -> tuple[GenerationStats, GenerationStats]:
        h = await start()
        clock = FakeClock()
        drafter = TimedDrafter(clock, 0.0005, wrong=lambda p: p < 4 or p % 9 == 8)
        channel = HeldAnswers(h.channel, timed_rounds(clock, 0.005, 0.001)).as_channel()
        client = TimedClient(h.client, clock, 0.005).as_client()
        estimates = _cloud_leaning()
        rates = estimates.rates(4, 40, 3)
        assert rates is not None and max(rates, key=lambda p: rates[p]) == "cloud"
        explorer = Explorer(every=2, rounds=explore_rounds, streak=1)  # the first request sent to the cloud explores
        runs = []
        for prompt in ([3], [5]):
            stats = GenerationStats(mode="auto")
            out = await collect(adaptive_loop(request(prompt, 40, pipelined=True), drafter,
                                              LoopContext(channel, client, 16, estimates, clock=clock), stats,
                                              explorer, shadow=False), 40)
            assert out == greedy_continuation(prompt[0], 40)
            runs.append(stats)
        await h.aclose()
        return runs[0], runs[1]

    return asyncio.run(body())


def test_an_explored_request_measures_before_it_may_hand_over_so_one_bad_start_does_not_stick() -> None:
    explored, following = _after_an_unlucky_start(explore_rounds=10)
    assert explored.why.startswith("refreshing the estimates") and explored.paths[0] == "pipelined"
    assert explored.rounds >= 10 and explored.accepted > explored.rejections
    assert following.paths[0] != "cloud" and following.drafted > 0, following.why  # speculation won it back


def test_handing_over_at_once_keeps_the_bad_start_which_is_what_explore_rounds_prevents() -> None:
    explored, following = _after_an_unlucky_start(explore_rounds=0)
    assert explored.paths == ["pipelined", "cloud"], (explored.rounds, explored.why)
    assert following.paths[0] == "cloud" and following.drafted == 0  # the explorer measured too little


class CountedDrafter(TimedDrafter):
    """A timed drafter that counts the draft calls it has finished (a shadow guess is one)."""

    def __init__(self, clock: FakeClock, draft_s: float, wrong: Callable[[int], bool]) -> None:
        super().__init__(clock, draft_s, wrong)
        self.finished = 0

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        drafted = super().draft(context, sampling)
        self.finished += 1
        return drafted


class PacedClient(TimedClient):
    """Cloud streaming that sends its k-th chunk only once the drafter has finished k calls: every
    token the cloud streams meets a shadow guess made for it (a fast edge, without a clock)."""

    def __init__(self, client: VerifierClient, clock: FakeClock, step_s: float, drafter: CountedDrafter) -> None:
        super().__init__(client, clock, step_s)
        self.drafter = drafter

    async def generate(self, gen: Generation, max_tokens: int, stop_token_ids: list[int]
                       ) -> AsyncGenerator[GeneratedTokens, None]:
        drafter = self.drafter
        guessed = drafter.finished
        async for chunk in super().generate(gen, max_tokens, stop_token_ids):
            guessed += 1
            await until(lambda due=guessed: drafter.finished >= due)  # type: ignore[misc]
            yield chunk


def _shadowed(wrong: Callable[[int], bool]) -> GenerationStats:
    """A request the edge's estimates send to the cloud (three rounds seen, none accepted), its
    greedy tokens guessed in the shadow by a drafter wrong where ``wrong`` says (0.5 ms a draft,
    5 ms a pass, 1 ms of link, 5 ms a cloud step, on the test's clock)."""
    from proxy.decoding.adaptive import adaptive_loop
    from proxy.rounds.rates import Explorer

    async def body() -> GenerationStats:
        h = await start()
        clock = FakeClock()
        drafter = CountedDrafter(clock, 0.0005, wrong=wrong)
        channel = HeldAnswers(h.channel, timed_rounds(clock, 0.005, 0.001)).as_channel()
        client = PacedClient(h.client, clock, 0.005, drafter).as_client()
        estimates = _cloud_leaning()
        stats = GenerationStats(mode="auto")
        ctx = LoopContext(channel, client, 16, estimates, clock=clock)
        out = await collect(adaptive_loop(request([3], 60), drafter, ctx, stats, Explorer(every=100, rounds=6)), 60)
        assert out == greedy_continuation(3, 60)
        await h.aclose()
        return stats

    return asyncio.run(body())


def test_a_request_sent_to_the_cloud_turns_to_speculation_when_its_shadow_guesses_are_right() -> None:
    stats = _shadowed(wrong=lambda p: p % 9 == 8)
    assert stats.paths == ["cloud", "stop_and_wait"], (stats.paths, stats.why)
    assert stats.shadow_compared >= 8 and stats.shadow_agreed >= stats.shadow_compared - 2
    assert stats.drafted > 0 and stats.accepted > stats.rejections  # speculation was taken, and paid


def test_a_request_whose_shadow_guesses_miss_stays_in_the_cloud() -> None:
    stats = _shadowed(wrong=lambda p: True)
    assert stats.paths == ["cloud"] and stats.drafted == 0
    assert stats.shadow_compared >= 50 and stats.shadow_agreed == 0  # the guesses were made, and compared


def _predicted(prediction_of: Callable[[list[int]], list[int]], n: int, rejoin_run: int = 4,
               lost_after: int = 3) -> GenerationStats:
    """A greedy request of ``n`` tokens with the prediction ``prediction_of`` makes of the target's
    output, every draft of the edge's own drafter wrong and slow (10 ms a draft, 50 ms of link,
    5 ms a pass or a cloud step, on the test's clock; 3 drafts in a row off the prediction and it
    is lost): once lost, the estimates send the request to the cloud."""
    from proxy.decoding.adaptive import adaptive_loop
    from proxy.draft.prediction import PredictionDrafter, PredictionTrigger
    from proxy.rounds.rates import Explorer, LinkEstimates

    async def body() -> GenerationStats:
        h = await start()
        clock = FakeClock()
        out = greedy_continuation(2, n)
        prediction = PredictionDrafter(TimedDrafter(clock, 0.01, wrong=lambda p: True), prediction_of(out),
                                       output_start=2, lost_after=lost_after)
        channel = HeldAnswers(h.channel, timed_rounds(clock, 0.005, 0.05)).as_channel()
        client = TimedClient(h.client, clock, 0.005).as_client()
        estimates = LinkEstimates()
        for _ in range(3):
            estimates.observe_round(drafted=4, accepted=0, trip_s=0.06, verifier_s=0.005)
        estimates.observe_draft(0.01)
        estimates.observe_cloud_step(0.005)
        req = replace(request([1, 2], n, pipelined=True), trigger=PredictionTrigger(None, 4, 32))
        stats = GenerationStats(mode="auto")
        ctx = LoopContext(channel, client, 16, estimates, clock=clock)
        got = await collect(adaptive_loop(req, prediction, ctx, stats, Explorer(every=8, rounds=6),
                                          rejoin_run=rejoin_run, shadow=False), n)
        assert got == out
        await h.aclose()
        return stats

    return asyncio.run(body())


def _edited(rejoin_run: int) -> GenerationStats:
    """A prediction that leaves the output after 6 tokens, holds 6 tokens the output never has,
    then 12 of the output's own from where the output stands 18 tokens later (an edit that wrote
    a different passage). The bigram target's output is periodic (15 tokens), so the prediction
    holds none of the pairs that follow its 6th token there: the drafter is lost within 3 drafts
    and the request hands over to the cloud; the cloud's output then runs into the prediction's
    last 12 tokens."""
    return _predicted(lambda out: [*out[:6], *[out[1]] * 6, *out[24:36]], 40, rejoin_run)


def test_a_prediction_left_for_the_cloud_is_taken_up_again_where_the_output_rejoins_it() -> None:
    stats = _edited(rejoin_run=4)
    assert stats.paths[:3] == ["pipelined", "cloud", "pipelined"], (stats.paths, stats.why)
    assert stats.prediction_accepted > 6  # the prediction's tail was drafted and accepted, after the cloud


def test_without_rejoining_the_cloud_keeps_the_rest_which_is_what_rejoin_prevents() -> None:
    stats = _edited(rejoin_run=100)  # never enough of the prediction ahead
    assert stats.paths == ["pipelined", "cloud"] and stats.prediction_accepted == 6


def test_a_prediction_that_only_shares_a_phrase_is_not_taken_up_again_and_again() -> None:
    """Unrelated text holding one 4-token phrase of the (periodic) output: the output meets the
    phrase every 15 tokens. The first meeting is a rejoin (4 tokens, 8 ahead); its speculation
    takes fewer of the prediction's tokens than that, so the run a rejoin needs doubles to 8,
    which the phrase never gives again."""
    filler = 4

    def unrelated(out: list[int]) -> list[int]:
        phrase = out[20:24]
        # the filler's pairs are not the output's: the prediction holds no pair of the output outside the phrase
        at = out.index(filler)
        assert filler not in phrase and out[at + 1] != phrase[0] and out[at - 1] != phrase[-1]
        return [filler] * 6 + phrase + [filler] * 8

    stats = _predicted(unrelated, 60)
    assert stats.paths == ["pipelined", "cloud", "pipelined", "cloud"], (stats.paths, stats.why)
    assert stats.prediction_accepted < 4  # fewer than the rejoin's run (an edit's guess may hit by chance)


def test_a_phrase_that_gives_under_half_of_what_follows_a_rejoin_is_not_taken_up_again() -> None:
    """An 8-token phrase of the (periodic) output in unrelated text: the first meeting rejoins it
    (4 tokens, 4 ahead) and speculation takes its 4 tokens, as many as the run (the first rule
    does not double it), then 8 more of its own before the request is lost and handed over:
    under half of the 12 came from the prediction, so the run doubles to 8, and the phrase (6
    tokens ahead after its 8) is never rejoined again. Under the first rule alone it is
    rejoined at every meeting."""
    filler = 4

    def unrelated(out: list[int]) -> list[int]:
        at = out.index(filler)
        # the filler's pairs are not the output's: the prediction holds no pair of the output outside the phrase
        start = next(s for s in range(at + 1, len(out) - 8) if filler not in out[s:s + 8]
                     and out[at + 1] != out[s] and out[at - 1] != out[s + 7])
        return [filler] * 6 + out[start:start + 8] + [filler] * 6

    stats = _predicted(unrelated, 60, lost_after=8)
    assert stats.paths == ["pipelined", "cloud", "pipelined", "cloud"], (stats.paths, stats.why)
    assert stats.prediction_accepted >= 4  # the rejoin took the run's worth


class FrozenFit(CostFit):
    """A cost fit that keeps the model it was given (the plan stays put whatever is measured)."""

    def add_batch(self, size: int, seconds: float) -> None:
        pass

    def add_draft(self, seconds_per_token: float) -> None:
        pass


@pytest.mark.parametrize(("pipelined", "faults"), [
    (False, None), (False, LinkFaults(jitter_s=0.003, reorder=True, seed=5)),
    (True, LinkFaults(jitter_s=0.003, reorder=True, seed=5))])
def test_planned_upload_sends_each_round_in_batches_and_stays_exact(pipelined: bool, faults: LinkFaults | None) -> None:
    async def body() -> None:
        h = await start(faults=faults) if faults else await start()
        fit = FrozenFit()
        for size in (1, 2, 3):  # a cheap batch against a slow draft: send each token as it is drafted
            fit.sends.add(size, 1e-5 + 1e-6 * size)
        fit._g = 0.01
        planner = UploadPlanner(window=4, fit=fit)
        assert planner.plan() == [1, 1, 1, 1] and planner.boundaries() == {1, 2, 3}
        stats = GenerationStats(mode="speculative")
        req = replace(request([1, 2, 3], max_tokens=20, pipelined=pipelined), upload=planner)
        out = await collect(speculative_loop(req, h.drafters[0], h.ctx(), stats), 20)
        assert out == greedy_continuation(3, 20)
        assert stats.rounds + stats.accepted == 20 and stats.rejections > 0
        if pipelined:  # batches go up only while nothing is in flight: more frames than rounds
            assert stats.upload_batches > stats.rounds + stats.stale_rounds
        else:  # every drafted token went up in a frame of its own (a round's last frame: one or none)
            assert stats.upload_batches >= stats.drafted
        await h.aclose()

    asyncio.run(body())


class Spiral:
    """A search that hands out fixed points in turn (the loop's bookkeeping, without botorch)."""

    def __init__(self) -> None:
        self.calls = 0

    def prepare(self) -> None:
        pass

    def next_point(self, observations: object) -> tuple[float, float]:
        self.calls += 1
        return (0.05 * self.calls, 0.0)


class CountedTuner(ThresholdTuner):
    """Counts the searches the loop starts and those that finished (each runs in a worker thread)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.started = 0
        self.finished = 0

    def observe(self, point: tuple[float, float], seconds_per_token: float, rtt_s: float | None,
                alpha: float | None) -> bool:
        run = super().observe(point, seconds_per_token, rtt_s, alpha)
        self.started += int(run)
        return run

    def advance(self) -> None:
        try:
            super().advance()
        finally:
            self.finished += 1


def test_the_tuned_trigger_measures_its_points_in_segments_and_moves_on() -> None:
    async def body() -> None:
        h = await start()
        search = Spiral()
        tuner = CountedTuner(start=(0.0, 0.0), search=search, segment_tokens=4)
        stats = GenerationStats(mode="speculative")
        req = replace(request([1, 2, 3], max_tokens=60), tuning=tuner)
        out = await collect(speculative_loop(req, h.drafters[0], h.ctx(), stats), 60)
        assert out == greedy_continuation(3, 60)
        await until(lambda: tuner.finished == tuner.started)  # a search started by the last segment, in its thread
        seen = {p for p, _ in tuner.observations}
        assert (0.0, 0.0) in seen and len(seen) >= 3  # the start, then the spread points in turn
        assert all(v > 0 for _, v in tuner.observations)
        assert stats.thresholds is not None
        await h.aclose()

    asyncio.run(body())


def test_the_first_draft_and_the_first_rounds_trip_stay_out_of_the_per_token_estimates() -> None:
    """A request's first draft call also evaluates its prompt, and its first round's trip also
    waits for the verifier's prefill: both are start-up costs (TTFT), and counted as per-token
    ones they would make mode auto think speculation slow for many requests after. On the
    loop's clock: the first draft takes 0.2 s, every other 1 ms; a round's trip is the verifier's
    time for it plus 30 ms of link, the first one's 0.1 s more (the prefill)."""
    from proxy.rounds.rates import LinkEstimates

    clock = FakeClock()

    class SlowStart(ScriptedDrafter):
        def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
            clock.now += 0.2 if self.calls == 0 else 0.001  # the first also evaluates the prompt
            return super().draft(context, sampling)

    answers: list[float] = []

    def trip(answer: Verified | Stale) -> None:
        verifier_s = (answer.compute_us + answer.queue_us) / 1e6 if isinstance(answer, Verified) else 0.0
        clock.now += verifier_s + 0.03 + (0.1 if not answers else 0.0)
        answers.append(verifier_s)

    async def body() -> None:
        h = await start()
        drafter = SlowStart(wrong=lambda p: False)
        estimates = LinkEstimates()
        stats = GenerationStats(mode="speculative")
        held = HeldAnswers(h.channel, trip)
        ctx = h.ctx(channel=held.as_channel(), estimates=estimates, clock=clock)
        out = await collect(speculative_loop(request([3], 9, gamma=2), drafter, ctx, stats), 9)
        assert out == greedy_continuation(3, 9) and stats.rounds >= 3
        assert stats.draft_s == pytest.approx(0.2 + 0.001 * (drafter.calls - 1))
        assert estimates.draft_s.value == pytest.approx(0.001)
        # every round's trip is its verifier time and 30 ms of link; the first one's 0.1 s more
        assert stats.round_trip_s == pytest.approx(sum(answers) + 0.03 * len(answers) + 0.1)
        assert estimates.rtt_s.value == pytest.approx(0.03)
        await h.aclose()

    asyncio.run(body())
