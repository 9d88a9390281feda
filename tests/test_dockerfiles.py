"""The images' Dockerfiles (no container engine here to build them): hadolint finds nothing, and
each runs as a non-root user, has a healthcheck and bakes in no model directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_there_are_images_for_the_verifier_gpu_and_cpu_and_the_edge() -> None:
    assert {p.name for p in DOCKERFILES} == {"verifier.Dockerfile", "verifier-cpu.Dockerfile", "edge.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(path: Path) -> None:
    done = subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_non_root_with_a_healthcheck_and_no_model_inside(path: Path) -> None:
    text = path.read_text()
    final_stage = text.rsplit("\nFROM ", 1)[-1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK\s", final_stage, re.MULTILINE)
    copies = re.findall(r"^COPY\s+(.*)$", text, re.MULTILINE)
    assert not any("models" in c for c in copies), copies
