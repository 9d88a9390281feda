"""Prompt files, read in one place by the benchmark and the draft evaluation.

One prompt a line: JSON with ``messages`` (and optionally ``category``) or ``prompt`` (one
user message), or plain text (one user message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from verifier.core.chat_template import Messages


@dataclass(frozen=True)
class PromptRecord:
    category: str
    messages: Messages


def parse_prompt_line(line: str) -> PromptRecord:
    if not line.startswith("{"):
        return PromptRecord("chat", [{"role": "user", "content": line}])
    obj = json.loads(line)
    messages = obj["messages"] if "messages" in obj else [{"role": "user", "content": obj["prompt"]}]
    return PromptRecord(str(obj.get("category", "chat")), messages)


def balanced(records: list[PromptRecord], limit: int) -> list[PromptRecord]:
    """The first ``limit`` records taken round-robin over categories, in file order."""
    by_category: dict[str, list[PromptRecord]] = {}
    for r in records:
        by_category.setdefault(r.category, []).append(r)
    picked: list[PromptRecord] = []
    while len(picked) < min(limit, len(records)):
        for queue in by_category.values():
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def load_prompts(path: Path, limit: int | None = None) -> list[PromptRecord]:
    """Every prompt of the file, or ``limit`` of them balanced by category."""
    records = [parse_prompt_line(line.strip()) for line in path.read_text().splitlines() if line.strip()]
    return balanced(records, limit) if limit is not None and limit < len(records) else records
