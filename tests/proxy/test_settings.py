"""Edge settings: env vars, flags, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import CliApp

from proxy.settings import EdgeSettings
from tests.harness import cli_stderr_of_bad_env
from verifier.core.envsettings import load_settings

LIST_SETTINGS = ["api_key", "cors_origins"]


def test_env_vars_configure_the_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_EDGE_DRAFT_MODEL", "/models/d.gguf")
    monkeypatch.setenv("TANDEM_EDGE_GAMMA", "6")
    monkeypatch.setenv("TANDEM_EDGE_VERIFIER_URL", "http://10.0.0.1:9")
    s = EdgeSettings()
    assert (s.draft_model, s.gamma, s.verifier_url) == ("/models/d.gguf", 6, "http://10.0.0.1:9")


def test_invalid_values_refused() -> None:
    with pytest.raises(ValidationError):
        EdgeSettings(gamma=99)


@pytest.mark.parametrize("field", LIST_SETTINGS)
@pytest.mark.parametrize(("value", "expected"), [
    ("sekret", ["sekret"]),  # a plain value, as vLLM's VLLM_API_KEY
    ("a,b", ["a", "b"]),
    (" a , b ,", ["a", "b"]),
    ('["a", "b"]', ["a", "b"]),
    ("", []),
])
def test_list_settings_from_env_plain_comma_or_json(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv(f"TANDEM_EDGE_{field.upper()}", value)
    assert getattr(EdgeSettings(), field) == expected


@pytest.mark.parametrize("args", [
    ["--api-key", "a", "--api-key", "b"],
    ["--api-key", "a,b"],
    ["--api-key", '["a", "b"]'],
    ["--api-key", '["a"]', "--api-key", "b"],
    ["--api-key=a", "--api-key=b"],
])
def test_list_flags_as_before(args: list[str]) -> None:
    assert CliApp.run(EdgeSettings, cli_args=args).api_key == ["a", "b"]


def test_list_given_in_python_unchanged() -> None:
    assert EdgeSettings(api_key=["a,b"]).api_key == ["a,b"]


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_EDGE_PORT", "abc")
    with pytest.raises(SystemExit) as exit_:
        load_settings(EdgeSettings, "tandem-edge", [])
    assert str(exit_.value.code).startswith("tandem-edge: TANDEM_EDGE_PORT: Input should be a valid integer")


def test_bad_flag_names_the_flag_over_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_EDGE_GAMMA", "5")
    with pytest.raises(SystemExit) as exit_:
        load_settings(EdgeSettings, "tandem-edge", ["--gamma", "99"])
    assert exit_.value.code == "tandem-edge: --gamma: Input should be less than or equal to 32"


def test_bad_json_list_in_env_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_EDGE_API_KEY", '["a"')
    with pytest.raises(SystemExit) as exit_:
        load_settings(EdgeSettings, "tandem-edge", [])
    message = str(exit_.value.code)
    assert message.startswith("tandem-edge: TANDEM_EDGE_API_KEY: ") and "JSON list" in message
    assert "\n" not in message


def test_cli_exits_with_one_line_on_a_bad_env_value() -> None:
    assert cli_stderr_of_bad_env("proxy.cli", "TANDEM_EDGE_", "TANDEM_EDGE_PORT", "abc") == [
        "tandem-edge: TANDEM_EDGE_PORT: Input should be a valid integer, unable to parse string as an integer"
    ]
