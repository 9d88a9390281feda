"""The drafter interface: a tiny abstract class, one instance per concurrent sequence."""

from __future__ import annotations

from abc import ABC, abstractmethod

from proxy.draft.draws import DraftSampling
from verifier.core.codec import DraftToken


class Drafter(ABC):
    """Proposes tokens continuing ``context``. Keeps whatever state it likes between calls
    (a KV cache). A request's answers must not depend on what the drafter did before the
    request began (``begin``): the same request gets the same proposals on any drafter."""

    #: whether next_token works, i.e. the drafter can answer alone (edge-only mode)
    standalone: bool = True

    def begin(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """A new request starts with the next call: state kept from earlier requests may be
        reused only where it gives the same answers as a fresh start."""

    @abstractmethod
    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        """The draft token after ``context`` (with its proposal when sampling and the draft's
        confidence when it has one); None when it has nothing to propose there."""

    @abstractmethod
    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        """One token from the drafter's own distribution (edge-only mode)."""
