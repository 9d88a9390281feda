"""A bounded fuzzing run in `make test`: schema-generated requests (valid and invalid) against
the real edge and verifier; no 5xx beyond a documented 503, every error in the envelope. The
documented run (10,000 requests) is `python -m clients.fuzz` (docs/reliability.md)."""

from __future__ import annotations

import pytest

from clients.fuzz import fuzz
from tests.conftest import MODEL_ID, Server


@pytest.mark.parametrize("target", ["edge", "verifier"])
def test_generated_requests_never_get_a_5xx_or_a_bare_error(target: str, edge: Server, verifier: Server) -> None:
    server = edge if target == "edge" else verifier
    report = fuzz(server.url, 150, seed=7, model=MODEL_ID if target == "edge" else None)
    assert report.sent >= 100
    assert report.failures == []
    assert report.statuses[200] > 0 and report.statuses[400] > 0  # both kinds reached the server
