"""The drafter interface: a tiny abstract class, one instance per concurrent sequence."""

from __future__ import annotations

from abc import ABC, abstractmethod

from verifier.core.drafting import DraftSampling, DraftToken


class Drafter(ABC):
    """Proposes tokens continuing ``context``. Keeps whatever state it likes between calls
    (a KV cache) but must give the same answer as if it had started from scratch."""

    #: whether next_token works, i.e. the drafter can answer alone (edge-only mode)
    standalone: bool = True

    @abstractmethod
    def propose(self, context: list[int], gamma: int, sampling: DraftSampling,
                stop_token_ids: frozenset[int] = frozenset()) -> list[DraftToken]:
        """Up to gamma draft tokens after context; stops early after a stop token."""

    @abstractmethod
    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        """One token from the drafter's own distribution (edge-only mode)."""
