"""The verifier engine: sessions holding a verified prefix and its KV state, and their rounds.

Invariant per session: ``committed`` is prompt + verified output; its last token is the
*pending* token, verified but not yet in the KV state (the next round feeds it first, so its
logits score draft token 1). KV length == len(committed) - 1 between rounds.

Work of every session goes through one ``BatchScheduler``: a round (or a prefill chunk) is a
job; the scheduler batches jobs of many sessions into one backend pass under their deadlines.
A round's outcome (acceptance, commit, KV roll-back) is applied when its batch finishes,
whether or not its caller still waits, so a retried round is answered from the session. A
session is released only once no job of it is in flight.

The parts, one job each, composed by ``VerifierEngine`` (``facade``): ``registry`` (sessions:
created, looked up, ended, expired, bounded), ``validation`` (what is refused before any work),
``jobs`` (jobs on the scheduler, and the release of what they run on), ``rounds`` (scoring and
applying rounds), ``generation`` (cloud-only decoding) and ``scoring`` (prompt logprobs);
``state`` holds what they share.
"""

from verifier.engine.facade import VerifierEngine
from verifier.engine.state import EngineError, EngineStats, RoundResult, SchedulingConfig, Session

__all__ = ["EngineError", "EngineStats", "RoundResult", "SchedulingConfig", "Session", "VerifierEngine"]
