"""The set-up check: real probes in subprocesses, and a probe that dies of SIGILL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from verifier.core.cpu import GGML_OPTIONS, Cpu, build_key, chosen_options, parse_system_info, read_cpu
from verifier.selfcheck import RESULT_PREFIX, check, judge_draft, probe_command, run_probe

ROOT = Path(__file__).resolve().parents[2]
PIN = next(line.strip().strip('",') for line in (ROOT / "pyproject.toml").read_text().splitlines()
           if "llama-cpp-python==" in line)
EPYC = Cpu("AMD EPYC", frozenset("fpu sse2 lm sse4_2 fma avx f16c avx2 bmi2".split()))
AVX512_BUILD = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | LLAMAFILE = 1 |"


def test_a_library_that_dies_of_sigill_gets_a_message_naming_the_missing_feature() -> None:
    """A stand-in for llama.cpp built with AVX-512 on a CPU without it: the probe prints the
    library's report, then really dies of SIGILL; the check answers with words, not a signal."""
    script = (f"import os, signal; print({RESULT_PREFIX!r} + {json.dumps(json.dumps({'system_info': AVX512_BUILD}))},"
              " flush=True); os.kill(os.getpid(), signal.SIGILL)")
    returncode, result, tail = run_probe([sys.executable, "-c", script], timeout_s=60)
    assert returncode == -4 and result["system_info"] == AVX512_BUILD
    verdict = judge_draft(returncode, result, tail, EPYC)
    assert not verdict.ok
    assert "crashed with SIGILL on AMD EPYC (AVX2, no AVX-512, no AMX)" in verdict.message
    assert "AVX512 needs avx512f" in verdict.message and "make clean-llama setup" in verdict.message


def test_a_library_built_for_more_than_the_cpu_fails_the_check_even_when_it_ran() -> None:
    verdict = judge_draft(0, {"system_info": AVX512_BUILD, "llama_cpp": "0.3.36"}, "", EPYC)
    assert not verdict.ok and "AVX512 needs avx512f" in verdict.message
    fits = judge_draft(0, {"system_info": AVX512_BUILD.replace("AVX512 = 1", "AVX512 = 0"), "llama_cpp": "0.3.36"},
                       "", EPYC)
    assert fits.ok, fits.message


@pytest.mark.integration
def test_the_installed_llama_cpp_uses_what_this_cpu_has_and_nothing_more() -> None:
    """The set-up's build, as llama.cpp itself reports it: every option this CPU allows, no
    option it lacks, and no AMX."""
    from verifier.core.models import default_draft_path

    returncode, result, tail = run_probe(probe_command("--probe", "draft", "--draft", str(default_draft_path())), 300)
    assert returncode == 0, tail
    compiled = parse_system_info(str(result["system_info"]))
    cpu = read_cpu()
    assert judge_draft(returncode, result, tail, cpu).ok
    assert not {"AMX_INT8", "AMX_BF16"} & compiled
    x86 = {opt.reported_as for opt in GGML_OPTIONS} - {"SSE42"}  # llama.cpp reports no SSE42 line
    allowed = {opt.reported_as for opt in chosen_options(cpu.flags)} & x86
    stamps = [p.name.removeprefix(".llama-") for p in (ROOT / ".venv").glob(".llama-*")]
    if stamps == [build_key(PIN, cpu)]:  # set up for this CPU: every option it allows
        assert compiled & x86 == allowed
    else:  # set up for a smaller CPU (TANDEM_CPU_FLAGS)
        assert compiled & x86 <= allowed


@pytest.mark.integration
def test_the_check_runs_the_draft_and_a_torch_target_one_token_each() -> None:
    results = check("torch", None, None, timeout_s=300)
    assert [r.part for r in results] == ["draft (llama.cpp)", "target (torch)"]
    assert all(r.ok for r in results), [r.message for r in results]
    assert "torch_cpu_capability" in results[1].message
