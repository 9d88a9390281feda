"""Real client libraries work against the edge unchanged: LangChain's ChatOpenAI, LlamaIndex's
OpenAILike and instructor, run by clients/compat/check.py in their own virtualenv (.venv-compat/,
built by `make setup` from clients/compat/requirements.txt: their openai 2.x cannot share .venv).
The script runs once for the module; each check is its own test, its detail shown on failure (a
failure's detail carries the request bodies the library sent and the edge's responses)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MODEL_ID, ROOT, Server

pytestmark = pytest.mark.integration

COMPAT_PYTHON = ROOT / ".venv-compat" / "bin" / "python"
CHECK_SCRIPT = ROOT / "clients" / "compat" / "check.py"
CHECKS = [
    "langchain_invoke", "langchain_stream", "langchain_structured_json_schema", "langchain_structured_json_mode",
    "langchain_bind_tools_named", "langchain_bind_tools_named_strict",
    "llamaindex_chat", "llamaindex_stream", "llamaindex_complete",
    "instructor_json", "instructor_json_schema",
]
TIMEOUT_S = 900  # check.py, all checks (about 30 s today)


@pytest.fixture(scope="module")
def compat_python() -> Path:
    if not COMPAT_PYTHON.exists():  # a missing venv is a broken set-up, never a reason to skip
        pytest.fail(f"{COMPAT_PYTHON.relative_to(ROOT)} is missing: run `make compat` (`make test` builds it: "
                    ".venv-compat/ from clients/compat/requirements.txt)", pytrace=False)
    return COMPAT_PYTHON


@pytest.fixture(scope="module")
def results(compat_python: Path, speculative_edge: Server) -> dict[str, Any]:  # compat_python first: no servers
    # for nothing; an edge that always speculates (on loopback mode auto streams from the cloud instead)
    proc = subprocess.run([str(compat_python), str(CHECK_SCRIPT), "--base-url", f"{speculative_edge.url}/v1",
                           "--model", MODEL_ID,
                           "--only", *CHECKS], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"check.py exited with {proc.returncode}:\n{proc.stderr[-5000:]}"
    try:
        parsed: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"check.py printed no JSON ({exc}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") \
            from exc
    return parsed


@pytest.mark.timeout(TIMEOUT_S + 300)  # the first test's set-up runs check.py (and may start the servers)
@pytest.mark.parametrize("name", CHECKS)
def test_client_library(results: dict[str, Any], name: str) -> None:
    assert name in results, f"check.py gave no result for {name}: {sorted(results)}"
    assert results[name]["ok"], f"{name}: {results[name]['detail']}"
