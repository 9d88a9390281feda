"""Keep answering when the cloud fails: resume losslessly, or continue on the draft model.

``resumable`` wraps a request's decoding loop. The edge holds every token it has handed to
the client; when the verifier is lost (connection gone, restarted, stalled past the round
deadline, overloaded) the request goes on by the edge's cloud-loss policy:

- ``wait``: try again with backoff, up to ``wait_s`` from the loss, each time from a new
  verifier session over prompt + the tokens already produced: the output is the one an
  uninterrupted run gives (greedy), nothing lost and nothing twice. Past the bound it
  continues as ``draft`` does.
- ``draft``: the draft model continues alone; the request is marked degraded and every token
  from then on is counted as unverified.
- ``fail``: the loss reaches the client as an error.

A circuit breaker (``proxy.cloud.breaker``) spares the verifier when it is known to be down: a
request that finds it open does not try, and under ``wait`` continues on the draft at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from proxy.cloud.breaker import CircuitBreaker, backoff_s
from proxy.cloud.errors import VerifierRejected, VerifierUnavailable
from proxy.decoding.request import GenerationRequest, GenerationStats

log = logging.getLogger(__name__)

CloudLossPolicy = Literal["wait", "draft", "fail"]
Loop = AsyncGenerator[list[int], None]
# refusals after which a new session may succeed: the verifier restarted and forgot the session
# (an overloaded verifier answers 503, which is VerifierUnavailable already)
RESUMABLE_CODES = frozenset({"session_not_found"})


@dataclass(frozen=True)
class RecoveryPolicy:
    on_cloud_loss: CloudLossPolicy = "wait"
    wait_s: float = 30.0  # 'wait': how long to try to get the cloud back before the draft continues


def is_cloud_loss(exc: Exception) -> bool:
    """Whether a failure means "the cloud is not there" (worth a new session or a fallback),
    as opposed to a refusal of this request that a retry would only repeat."""
    if isinstance(exc, VerifierUnavailable):
        return True
    return isinstance(exc, VerifierRejected) and exc.code in RESUMABLE_CODES


async def resumable(
    req: GenerationRequest,
    cloud: Callable[[GenerationRequest], Loop],
    draft: Callable[[GenerationRequest], Awaitable[Loop | None]],
    policy: RecoveryPolicy,
    breaker: CircuitBreaker,
    stats: GenerationStats,
    clock: Callable[[], float] = time.monotonic,
) -> Loop:
    """``cloud(rest)`` runs the request's own loop from a point on; ``draft(rest)`` the draft
    model alone (None when this edge has no model that can answer alone)."""
    produced: list[int] = []
    outage = _Outage(policy, breaker, stats, clock)
    while len(produced) < req.max_tokens:
        loss: Exception
        if breaker.allows(clock()):
            loop = cloud(req.continued(produced))
            try:
                async for new in loop:
                    outage.answered()
                    produced.extend(new)
                    yield new
                return
            except (VerifierUnavailable, VerifierRejected) as exc:
                if not is_cloud_loss(exc):
                    raise
                outage.lost(exc, len(produced))
                loss = exc
            finally:
                await loop.aclose()
        else:
            loss = outage.refused()
        if await outage.waited(loss):
            continue
        alone = await draft(req.continued(produced))
        if alone is None:
            raise loss
        stats.degraded = True
        stats.degraded_reason = str(loss)
        try:
            async for new in alone:
                stats.unverified_tokens += len(new)
                produced.extend(new)
                yield new
        finally:
            await alone.aclose()
        return


class _Outage:
    """One request's time without its verifier, by the edge's cloud-loss policy: when the
    current outage began and how many tries it has seen (their backoff)."""

    def __init__(self, policy: RecoveryPolicy, breaker: CircuitBreaker, stats: GenerationStats,
                 clock: Callable[[], float]) -> None:
        self.policy, self.breaker, self.stats, self.clock = policy, breaker, stats, clock
        self.lost_at: float | None = None  # when the current outage began (None: the cloud is answering)
        self.attempt = 0

    def answered(self) -> None:
        """The cloud answered: the outage (and the breaker's run of failures) is over."""
        if self.lost_at is not None or self.breaker.failures:
            self.breaker.succeeded()
            self.lost_at, self.attempt = None, 0

    def lost(self, exc: Exception, produced: int) -> None:
        """The cloud was lost after ``produced`` tokens: the breaker and the request count it."""
        self.breaker.failed(self.clock())
        self.stats.cloud_losses += 1
        log.warning("verifier lost", extra={"tokens_so_far": produced, "loss": self.stats.cloud_losses,
                                            "error": str(exc)})

    def refused(self) -> Exception:
        """The breaker is open: the cloud is not tried; the loss that stands for."""
        loss = VerifierUnavailable("the verifier failed repeatedly; not tried until its cooldown ends")
        if self.lost_at is None and self.policy.on_cloud_loss == "wait":
            self.lost_at = self.clock() - self.policy.wait_s  # known down before this request: no wait of its own
        return loss

    async def waited(self, loss: Exception) -> bool:
        """After ``loss``: raise it under 'fail'; under 'wait' and within its bound, sleep the
        backoff and return True (try the cloud again); else False (the draft model continues)."""
        if self.policy.on_cloud_loss == "fail":
            raise loss
        now = self.clock()
        if self.lost_at is None:
            self.lost_at = now
        if self.policy.on_cloud_loss == "wait" and now - self.lost_at < self.policy.wait_s:
            await asyncio.sleep(min(backoff_s(self.attempt), self.policy.wait_s - (now - self.lost_at)))
            self.attempt += 1
            return True
        return False
