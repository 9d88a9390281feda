"""The target-model backend interface: the only thing the verifier engine needs from a model.

A backend scores tokens against a per-session KV state. ``extend`` appends tokens to the
state and returns logits only for the trailing rows asked for, so a verify round costs
the new tokens, never the whole context. ``truncate`` rolls the state back after a
rejection. Backends are synchronous; the engine runs them off the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
import numpy.typing as npt

from verifier.core.protocol import ModelInfo

#: Linear kernels of the torch backend on CPU (``verifier.backends.torch_backend.use_onednn_linear``)
CpuLinear = Literal["auto", "onednn", "torch"]


class SequenceState(ABC):
    """Opaque per-session KV state owned by a backend."""

    @property
    @abstractmethod
    def length(self) -> int:
        """Tokens currently held in the KV state."""


class TargetBackend(ABC):
    info: ModelInfo

    @abstractmethod
    def new_state(self) -> SequenceState: ...

    @abstractmethod
    def extend(
        self, state: SequenceState, token_ids: list[int], logits_rows: int
    ) -> npt.NDArray[np.float32]:
        """Append token_ids to state; return logits [logits_rows, vocab] for the last rows."""

    @abstractmethod
    def truncate(self, state: SequenceState, length: int) -> None:
        """Drop every cached token at index >= length."""

    def release(self, state: SequenceState) -> None:  # noqa: B027 - optional hook, no-op by default
        """Free the memory of a state that will not be used again."""
