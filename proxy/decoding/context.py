"""What the edge lends a request's decoding loop besides the request itself (``LoopContext``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy.cloud.channel import VerifierChannel
from proxy.cloud.client import VerifierClient
from proxy.rounds.rates import LinkEstimates
from proxy.rounds.round_log import RoundLog


@dataclass(frozen=True)
class LoopContext:
    """The edge's parts a loop runs with: the verifier's channel (speculation's sessions) and
    client (cloud streaming), how many draft probabilities a round carries (``proposal_support``),
    the link estimates every round and cloud step feed (None: nothing learnt; mode auto needs
    them), the round log, how long a round may stay unanswered, and the clock (seconds) that
    times draft calls, round trips, waits and upload batches."""

    channel: VerifierChannel
    client: VerifierClient
    proposal_support: int
    estimates: LinkEstimates | None = None
    round_log: RoundLog | None = None
    round_timeout_s: float | None = None
    clock: Callable[[], float] = time.perf_counter
