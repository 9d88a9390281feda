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
    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        """The draft token after ``context`` (with its proposal when sampling and the draft's
        confidence when it has one); None when it has nothing to propose there."""

    @abstractmethod
    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        """One token from the drafter's own distribution (edge-only mode)."""
