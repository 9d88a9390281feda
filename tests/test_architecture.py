"""The code's shape: the import contracts in pyproject.toml name every module they must (``make
test`` runs them with lint-imports), and no server file or function grows past the size limits."""

from __future__ import annotations

import ast
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


def _long(limit_lines: int, limit_fn: int) -> tuple[list[str], list[str]]:
    """The servers' files over ``limit_lines`` lines and functions over ``limit_fn`` lines (def
    line to last line, docstring included), outside the distillation tool."""
    files: list[str] = []
    functions: list[str] = []
    for path in sorted([*(ROOT / "proxy").rglob("*.py"), *(ROOT / "verifier").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("verifier/distill/"):
            continue
        text = path.read_text()
        if text.count("\n") > limit_lines:
            files.append(rel)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                if node.end_lineno - node.lineno + 1 > limit_fn:
                    functions.append(f"{rel}:{node.lineno} {node.name}")
    return files, functions


def test_no_server_file_over_400_lines_and_no_function_over_60() -> None:
    files, functions = _long(400, 60)
    assert files == [] and functions == []


def test_the_size_check_finds_a_long_function() -> None:
    _, functions = _long(10_000, 5)  # any real code base has functions over 5 lines
    assert functions and all(":" in f for f in functions)
