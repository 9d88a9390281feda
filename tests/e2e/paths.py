"""What an e2e test asserts about the path its request took: a test forces ``tandem.mode``, and
the answer's ``tandem`` object shows the path was taken (mode auto on a shared edge goes where
the estimates left by earlier tests send it)."""

from __future__ import annotations

from typing import Any


def assert_speculated(stats: dict[str, Any], path: str = "pipelined", rejected: bool = True) -> None:
    """The request took the speculative path it was forced onto: rounds verified drafts (and,
    where the test needs the rollback, some were rejected)."""
    assert stats["mode"] == "speculative" and stats["path"] == path, stats
    assert stats["rounds"] > 0 and stats["drafted"] > 0, stats
    if rejected:
        assert stats["rejections"] > 0 and stats["accepted"] < stats["drafted"], stats


def assert_path(stats: dict[str, Any], mode: str) -> None:
    """The request ran in the forced ``mode``: speculation verified drafts (pipelined, or stop-and-wait
    for a seeded sample, whose round boundaries must not depend on timing); the cloud drafted nothing."""
    if mode == "cloud":
        assert stats["mode"] == "cloud" and stats["path"] == "cloud" and stats["drafted"] == 0, stats
    else:
        assert stats["mode"] == mode == "speculative" and stats["path"] in ("pipelined", "stop_and_wait"), stats
        assert stats["rounds"] > 0 and stats["drafted"] > 0, stats
