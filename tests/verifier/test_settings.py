"""Verifier settings: env vars and flags."""

from __future__ import annotations

import pytest
from pydantic_settings import CliApp

from verifier.settings import VerifierSettings


def test_cli_flags_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_VERIFIER_PORT", "9000")
    s = CliApp.run(VerifierSettings, cli_args=["--model", "/m", "--backend", "torch", "--session-ttl-s", "5"])
    assert (s.model, s.backend, s.session_ttl_s, s.port) == ("/m", "torch", 5.0, 9000)
