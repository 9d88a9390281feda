"""A bench's raw result file: its command, the machine and its load, and the bench's own records."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verifier.core.cpu import read_cpu


def write_raw(path: Path | None, command: str, load_start: Sequence[float], **records: Any) -> None:
    """Write ``records`` to ``path`` as JSON (nothing when ``path`` is None), with the command, the CPU,
    its cores and the load average at the start (``os.getloadavg()`` taken then) and now."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": command, "cpu": read_cpu().describe(), "cores": os.cpu_count(),
                                "load_average_start": [round(x, 2) for x in load_start],
                                "load_average_end": [round(x, 2) for x in os.getloadavg()], **records},
                               indent=1) + "\n")
