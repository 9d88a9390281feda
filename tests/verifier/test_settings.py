"""Verifier settings: env vars and flags."""

from __future__ import annotations

import pytest
from pydantic_settings import CliApp

from tests.harness import cli_stderr_of_bad_env
from verifier.core.envsettings import load_settings, source_of
from verifier.settings import VerifierSettings


def test_cli_flags_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_VERIFIER_PORT", "9000")
    s = CliApp.run(VerifierSettings, cli_args=["--model", "/m", "--backend", "torch", "--session-ttl-s", "5"])
    assert (s.model, s.backend, s.session_ttl_s, s.port) == ("/m", "torch", 5.0, 9000)


def test_bad_values_name_their_flag_or_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_VERIFIER_MAX_SESSIONS", "x")
    with pytest.raises(SystemExit) as exit_:
        load_settings(VerifierSettings, "tandem-verifier", ["--max-batch-tokens=0"])
    assert exit_.value.code == (
        "tandem-verifier: TANDEM_VERIFIER_MAX_SESSIONS: Input should be a valid integer, unable to parse string "
        "as an integer; --max-batch-tokens: Input should be greater than or equal to 1"
    )


def test_an_unknown_source_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANDEM_VERIFIER_PORT", raising=False)
    assert source_of("port", VerifierSettings, []) == "--port / TANDEM_VERIFIER_PORT"


def test_cli_exits_with_one_line_on_a_bad_env_value() -> None:
    assert cli_stderr_of_bad_env("verifier.cli", "TANDEM_VERIFIER_", "TANDEM_VERIFIER_MAX_SESSIONS", "x") == [
        "tandem-verifier: TANDEM_VERIFIER_MAX_SESSIONS: Input should be a valid integer, unable to parse string "
        "as an integer"
    ]
