"""Shadow drafting: while the cloud streams a greedy request, the edge's drafter (idle on that
path) guesses each next token from the output so far. How often its guess is the cloud's token
is the request's own per-token acceptance, measured at no cost to the cloud or to the stream:
mode auto turns to speculation on it when the draft would pay for this request, where the
edge's estimate over all requests says it does not (``proxy.decoding.adaptive``).

A guess still running when the next token arrives is never waited for: that token goes
uncompared, and the next guess starts from the output as it then is. The guesses run in a thread
of the lowest priority, so on an edge short of CPU they take only time the stream leaves idle.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from proxy.decoding.threads import DrafterCall, lower_priority
from proxy.draft.base import Drafter
from proxy.draft.draws import DraftSampling
from verifier.core.codec import DraftToken


class ShadowDraft:
    """One request's shadow drafting over the cloud's stream (``context``: prompt and output so
    far). ``agreed`` and ``missed`` count the cloud tokens compared with the draft's guess."""

    def __init__(self, drafter: Drafter, sampling: DraftSampling, context: list[int]) -> None:
        if sampling.temperature > 0:
            raise ValueError("shadow drafting compares greedy guesses: a sampled request has none")
        self.drafter, self.sampling = drafter, sampling
        self.context = list(context)
        self.agreed = 0
        self.missed = 0
        self._guess: DrafterCall[DraftToken | None] | None = None
        self._guessed_at = -1  # the context length the pending guess continues
        self._thread: ThreadPoolExecutor | None = None  # the guesses' own, while they run

    @property
    def compared(self) -> int:
        return self.agreed + self.missed

    def start(self) -> None:
        """Guess the first token the cloud will send."""
        self._launch()

    def saw(self, tokens: list[int]) -> None:
        """The cloud's next tokens: the first is compared with the guess for it when that guess is
        ready; a new guess starts once none is running."""
        guess = self._guess.task if self._guess is not None else None
        ready = guess is None or guess.done()
        if guess is not None and ready:
            drafted = None if guess.cancelled() or guess.exception() is not None else guess.result()
            if drafted is not None and tokens and self._guessed_at == len(self.context):
                self.agreed += int(drafted.token_id == tokens[0])
                self.missed += int(drafted.token_id != tokens[0])
        self.context.extend(tokens)
        if ready:
            self._launch()

    async def close(self) -> None:
        """Return once no guess runs (the drafter is the request's, and may be used next), even
        when the waiting task is cancelled meanwhile (then re-raised)."""
        try:
            if self._guess is not None:
                await self._guess.settle()
        finally:
            if self._thread is not None:  # its last call has settled (or was never taken up)
                self._thread.shutdown(wait=False)
                self._thread = None

    def _launch(self) -> None:
        self._guessed_at = len(self.context)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="tandem-shadow", initializer=lower_priority)
        self._guess = DrafterCall(self.drafter.draft, list(self.context), self.sampling, executor=self._thread)
