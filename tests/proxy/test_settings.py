"""Edge settings: env vars, flags, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from proxy.settings import EdgeSettings


def test_env_vars_configure_the_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_EDGE_DRAFT_MODEL", "/models/d.gguf")
    monkeypatch.setenv("TANDEM_EDGE_GAMMA", "6")
    monkeypatch.setenv("TANDEM_EDGE_VERIFIER_URL", "http://10.0.0.1:9")
    s = EdgeSettings()
    assert (s.draft_model, s.gamma, s.verifier_url) == ("/models/d.gguf", 6, "http://10.0.0.1:9")


def test_invalid_values_refused() -> None:
    with pytest.raises(ValidationError):
        EdgeSettings(gamma=99)
