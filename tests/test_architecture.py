"""The import contracts in pyproject.toml name every module they must (``make test`` runs them
with lint-imports): a new verifier module is forbidden to the core and to the edge too."""

from __future__ import annotations

import pkgutil
import tomllib

import verifier
from tests.conftest import ROOT


def _contracts() -> dict[str, list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["source_modules"][0]: c["forbidden_modules"] for c in config["contracts"]}


def test_every_verifier_module_outside_the_core_is_forbidden_to_the_core_and_the_edge() -> None:
    outside_core = {f"verifier.{m.name}" for m in pkgutil.iter_modules(verifier.__path__) if m.name != "core"}
    contracts = _contracts()
    assert outside_core <= set(contracts["verifier.core"])
    assert outside_core <= set(contracts["proxy"])
    assert {"proxy", "clients"} <= set(contracts["verifier"])
