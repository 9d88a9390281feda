"""``proxy.decoding.resume``: a request's loop resumed after a cloud loss, or continued on the draft."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from proxy.cloud.breaker import CircuitBreaker
from proxy.cloud.errors import VerifierRejected, VerifierUnavailable
from proxy.decoding.pipeline import PipelinePolicy
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.decoding.resume import Loop, RecoveryPolicy, resumable
from verifier.core.protocol import Generation, SamplingParams

TRUTH = list(range(100, 140))  # what the target says after the prompt [1, 2, 3]
DRAFT_SAYS = 7  # the draft model alone says 7, 7, 7, ...


def request(max_tokens: int = 20) -> GenerationRequest:
    return GenerationRequest(Generation(prompt_token_ids=[1, 2, 3], sampling=SamplingParams(seed=1)),
                             max_tokens=max_tokens, stop_token_ids=frozenset(), policy=PipelinePolicy.stop_and_wait(4))


class FlakyCloud:
    """Yields the truth from where the request's prompt ends, two tokens at a time; the n-th call
    fails after ``fail_after[n]`` tokens (None: never), with ``error``."""

    def __init__(self, fail_after: list[int | None], error: Exception | None = None) -> None:
        self.fail_after = fail_after
        self.error = error or VerifierUnavailable("ConnectError talking to the verifier")
        self.prompts: list[list[int]] = []

    def __call__(self, req: GenerationRequest) -> Loop:
        return self._run(req, len(self.prompts))

    async def _run(self, req: GenerationRequest, call: int) -> AsyncGenerator[list[int], None]:
        self.prompts.append(req.generation.prompt_token_ids)
        done = len(req.generation.prompt_token_ids) - 3
        limit = self.fail_after[call] if call < len(self.fail_after) else None
        sent = 0
        while sent < req.max_tokens:
            if limit is not None and sent >= limit:
                raise self.error
            chunk = TRUTH[done + sent:done + sent + min(2, req.max_tokens - sent)]
            sent += len(chunk)
            yield chunk
            await asyncio.sleep(0)


async def draft_alone(req: GenerationRequest) -> Loop:
    async def run() -> AsyncGenerator[list[int], None]:
        for _ in range(req.max_tokens):
            yield [DRAFT_SAYS]

    return run()


async def no_draft(req: GenerationRequest) -> Loop | None:
    return None


async def collect(loop: Loop) -> list[int]:
    out: list[int] = []
    async for new in loop:
        out.extend(new)
    return out


def run(cloud: FlakyCloud, policy: RecoveryPolicy, breaker: CircuitBreaker | None = None,
        max_tokens: int = 20, draft: object = draft_alone) -> tuple[list[int], GenerationStats]:
    stats = GenerationStats(mode="cloud")
    loop = resumable(request(max_tokens), cloud, draft, policy, breaker or CircuitBreaker(), stats)  # type: ignore[arg-type]
    return asyncio.run(collect(loop)), stats


def test_wait_resumes_from_the_tokens_produced_nothing_lost_nothing_twice() -> None:
    cloud = FlakyCloud([6, 0, 3])  # lost after 6 tokens, a failed reconnect, lost again after 3 more
    out, stats = run(cloud, RecoveryPolicy("wait", wait_s=5))
    assert out == TRUTH[:20]
    assert cloud.prompts == [[1, 2, 3], [1, 2, 3, *TRUTH[:6]], [1, 2, 3, *TRUTH[:6]], [1, 2, 3, *TRUTH[:10]]]
    assert stats.cloud_losses == 3 and not stats.degraded
    assert "degraded" not in stats.as_dict()


def test_draft_continues_alone_and_counts_what_it_did_not_verify() -> None:
    cloud = FlakyCloud([4])
    out, stats = run(cloud, RecoveryPolicy("draft"))
    assert out == TRUTH[:4] + [DRAFT_SAYS] * 16
    assert len(cloud.prompts) == 1
    d = stats.as_dict()
    assert d["degraded"] is True and d["unverified_tokens"] == 16 and "ConnectError" in str(d["degraded_reason"])


def test_fail_reports_the_loss() -> None:
    with pytest.raises(VerifierUnavailable):
        run(FlakyCloud([4]), RecoveryPolicy("fail"))


def test_wait_gives_up_after_its_bound_and_the_draft_continues() -> None:
    cloud = FlakyCloud([2] + [0] * 100)
    out, stats = run(cloud, RecoveryPolicy("wait", wait_s=0.3), CircuitBreaker(threshold=1000))
    assert out == TRUTH[:2] + [DRAFT_SAYS] * 18 and stats.degraded
    assert 3 <= len(cloud.prompts) <= 6  # backoff 0.1, 0.2, ... within 0.3 s


def test_without_a_model_that_answers_alone_the_loss_is_reported() -> None:
    with pytest.raises(VerifierUnavailable):
        run(FlakyCloud([2]), RecoveryPolicy("draft"), draft=no_draft)


def test_a_refusal_of_the_request_is_not_a_loss() -> None:
    cloud = FlakyCloud([1], VerifierRejected(400, "bad round", "invalid_round"))
    with pytest.raises(VerifierRejected):
        run(cloud, RecoveryPolicy("wait", wait_s=5))
    assert len(cloud.prompts) == 1
    # a verifier that restarted and forgot the session: resumed
    restarted = FlakyCloud([1], VerifierRejected(404, "no such session", "session_not_found"))
    assert run(restarted, RecoveryPolicy("wait", wait_s=5))[0] == TRUTH[:20]


def test_an_open_breaker_skips_the_cloud_and_wait_continues_on_the_draft_at_once() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown_s=60)
    breaker.failed(time.monotonic())
    cloud = FlakyCloud([])
    out, stats = run(cloud, RecoveryPolicy("wait", wait_s=30), breaker)
    assert out == [DRAFT_SAYS] * 20 and stats.degraded and cloud.prompts == []


def test_a_success_after_a_loss_closes_the_breaker() -> None:
    breaker = CircuitBreaker(threshold=5)
    out, _ = run(FlakyCloud([3, 0]), RecoveryPolicy("wait", wait_s=5), breaker)
    assert out == TRUTH[:20] and breaker.failures == 0


def test_continued_keeps_sampling_and_the_output_start_and_shrinks_the_budget() -> None:
    req = request(10)
    rest = req.continued([5, 6])
    assert rest.generation.prompt_token_ids == [1, 2, 3, 5, 6] and rest.max_tokens == 8
    assert rest.generation.sampling == req.generation.sampling
    assert rest.generation.output_index() == 3 and rest.continued([7]).generation.output_index() == 3
    assert req.continued([]) is req
