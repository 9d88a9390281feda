"""What the edge knows of its verifier: reachable or not, and the limits it serves with."""

from __future__ import annotations

import time

from proxy.cloud.client import VerifierClient
from proxy.cloud.errors import VerifierRejected, VerifierUnavailable
from proxy.openai.errors import OpenAIError
from verifier.core.wire import PROTOCOL_VERSION

PROBE_TIMEOUT_S = 2.0  # a health probe waits no longer for a frozen verifier


class VerifierProbe:
    """Learns the verifier's context limit once (an edge may start before its verifier) and
    refuses a verifier whose vocabulary differs from the draft's."""

    def __init__(self, client: VerifierClient, vocab_size: int) -> None:
        self._client = client
        self._vocab_size = vocab_size
        self.max_context: int | None = None
        self.verifies_sampled = True  # the verifier can check sampled drafts (else: greedy ones only)
        self.rows_are_logits = True  # its rows are logits (else log-probabilities: no repetition_penalty)
        self.continues_output = True  # its own decoding continues any generation after output (ModelInfo)
        self._last: tuple[float, bool] | None = None  # (when, reachable) of the last check

    async def reachable(self, max_age_s: float) -> bool:
        """Whether the verifier answered, asking it again only when the last answer is older than
        ``max_age_s`` (health probes must not load the verifier)."""
        now = time.monotonic()
        if self._last is None or now - self._last[0] >= max_age_s:
            try:
                ok = await self.check(timeout_s=PROBE_TIMEOUT_S)
            except OpenAIError:
                ok = False
            self._last = (time.monotonic(), ok)
        return self._last[1]

    async def check(self, timeout_s: float | None = None) -> bool:
        """Whether the verifier answers; raises OpenAIError (502) for a vocabulary mismatch."""
        try:
            info = await self._client.info(timeout_s)
        except (VerifierUnavailable, VerifierRejected):
            return False
        if info.protocol_version != PROTOCOL_VERSION:
            raise OpenAIError(
                502, f"the verifier speaks verify protocol {info.protocol_version}, this edge {PROTOCOL_VERSION}: "
                "run the same Tandem version on both", "server_error", None, "protocol_mismatch")
        if info.vocab_size != self._vocab_size:
            raise OpenAIError(
                502, f"the verifier's model has a vocabulary of {info.vocab_size} tokens, the edge's draft "
                f"{self._vocab_size}: they cannot work together", "server_error", None, "model_mismatch")
        self.max_context = info.max_context
        self.verifies_sampled = info.verifies_sampled
        self.rows_are_logits = info.rows_are_logits
        self.continues_output = info.continues_output
        return True

    async def ensure_known(self) -> None:
        if self.max_context is None:
            await self.check(timeout_s=PROBE_TIMEOUT_S)
