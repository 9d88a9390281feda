"""The round log: every speculative round's draft-token features and outcome, one JSON line
each, the training data of the rejection predictor (`tandem-draft fit-predictor`; the format
is read by ``verifier.core.predictor.read_rounds``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from verifier.core.codec import DraftToken


class RoundLog:
    def __init__(self, path: str | Path) -> None:
        self._file: TextIO = Path(path).open("a", buffering=1)  # line-buffered: a line is a whole round

    def write(self, drafts: Sequence[DraftToken], accepted: int) -> None:
        """One round: the features of each draft token (in order) and how many were accepted."""
        features = [list(d.features) for d in drafts if d.features is not None]
        if len(features) == len(drafts) and drafts:
            self._file.write(json.dumps({"features": features, "accepted": accepted}) + "\n")

    def close(self) -> None:
        self._file.close()

