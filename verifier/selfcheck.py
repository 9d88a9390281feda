"""The set-up's last step: can this machine run the default model pair?

Each part runs in a subprocess of its own, so that a library built for another CPU ends in a
message rather than in a signal that kills the set-up, a test run or ``make run``:

- ``draft``: llama.cpp opens the edge's default draft GGUF and evaluates one token; its own
  report of the features it was compiled with is compared with the CPU's;
- ``target``: the default verifier backend loads the target and scores one token; the report
  names the CPU kernels it runs (vLLM's extension build, torch's CPU capability).

``python -m verifier.selfcheck [--backend vllm|torch] [--draft PATH] [--only draft|target]`` prints
one line a part and exits 1 with the cause and what to do when a part fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from verifier.core.cpu import Cpu, explain_exit, explain_gaps, fix_line, missing_features, parse_system_info, read_cpu

RESULT_PREFIX = "selfcheck-result "  # the probe's one line of JSON on stdout
PARTS = ("draft", "target")
TIMED_OUT = 124  # a probe's exit code when it ran past its time (as timeout(1) reports it)


@dataclass(frozen=True)
class PartResult:
    part: str
    ok: bool
    message: str


def probe_draft(draft: Path) -> dict[str, object]:
    """In the probe subprocess: llama.cpp's compiled features (printed first, so that a crash
    still leaves them), then one token of the draft."""
    import llama_cpp  # noqa: PLC0415 - the probe's whole point is to import it in a child

    from verifier.core.gguf import last_logits, load_llama  # noqa: PLC0415

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    print(RESULT_PREFIX + json.dumps({"system_info": info}), flush=True)
    llm = load_llama(draft, n_ctx=64, threads=1)
    tokens = llm.tokenize(b"Hello", add_bos=True)
    llm.eval(tokens)
    logits = last_logits(llm)
    if not bool(abs(logits).max() < 1e30):
        raise RuntimeError("the draft's logits are not finite")
    return {"system_info": info, "token": int(logits.argmax()), "llama_cpp": llama_cpp.__version__}


def probe_target(backend: str, model: Path | None) -> dict[str, object]:
    """In the probe subprocess: the backend loads the target and scores one token."""
    import numpy as np  # noqa: PLC0415

    from verifier.backends import BackendOptions, load_backend  # noqa: PLC0415
    from verifier.backends.base import ScoreBatch  # noqa: PLC0415
    from verifier.core.models import default_target_dir  # noqa: PLC0415

    target = load_backend(backend, str(model or default_target_dir()), BackendOptions(threads=1))
    try:
        state = target.new_state()
        rows = target.score(ScoreBatch.of([(state, [1, 2, 3], 1)]))
        if not np.isfinite(rows[0]).any():
            raise RuntimeError("the target's scores are not finite")
        report: dict[str, object] = {"token": int(np.argmax(rows[0][-1]))} | kernel_report()
    finally:
        target.close()
    return report


def kernel_report() -> dict[str, object]:
    """Which CPU kernels the loaded libraries picked: torch's capability (its ATen dispatch and
    oneDNN choose at run time) and, if vLLM is loaded, which of its C extension builds
    (``_C_AVX2``, ``_C_AVX512``, ``_C`` for AVX-512 with BF16) this process or its engine
    process mapped."""
    import torch  # noqa: PLC0415

    report: dict[str, object] = {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    mapped: set[str] = set()
    for pid in [os.getpid(), *descendants(os.getpid())]:
        try:
            lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
        except OSError:
            continue
        mapped |= {Path(line.split()[-1]).name for line in lines if "/vllm/_C" in line}
    if mapped:
        report["vllm_extension"] = sorted(mapped)
    return report


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (vLLM's engine process and its worker)."""
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc; none elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def probe_command(*args: str) -> list[str]:
    """This module as a probe subprocess."""
    return [sys.executable, "-m", "verifier.selfcheck", *args]


def run_probe(argv: list[str], timeout_s: float) -> tuple[int, dict[str, object], str]:
    """Run a probe; return its exit code (negative: the signal that ended it), what its result
    lines said, and its output's tail."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return TIMED_OUT, {}, f"timed out after {timeout_s:.0f} s\n{out[-2000:]}"
    result: dict[str, object] = {}
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result |= json.loads(line[len(RESULT_PREFIX):])
    return done.returncode, result, (done.stdout + done.stderr)[-2000:]


def judge_draft(returncode: int, result: dict[str, object], tail: str, cpu: Cpu) -> PartResult:
    compiled = parse_system_info(str(result.get("system_info", "")))
    gaps = missing_features(compiled, cpu)
    if returncode != 0:
        why = explain_exit("llama.cpp loading the draft", returncode, cpu, compiled)
        return PartResult("draft (llama.cpp)", False, f"{why}\n--- output ---\n{tail}")
    if gaps:  # it ran, but a later kernel would fault
        return PartResult("draft (llama.cpp)", False, f"{explain_gaps(compiled, cpu)}\n{fix_line(cpu)}")
    return PartResult("draft (llama.cpp)", True,
                      f"llama-cpp-python {result.get('llama_cpp')}, compiled with {' '.join(sorted(compiled))}")


def judge_target(backend: str, returncode: int, result: dict[str, object], tail: str, cpu: Cpu) -> PartResult:
    part = f"target ({backend})"
    if returncode != 0:
        how = explain_exit(f"the {backend} backend loading the target", returncode, cpu) if returncode < 0 \
            else f"the {backend} backend failed to load or score the target on {cpu.describe()}"
        fix = ("`make clean setup` reinstalls the pinned packages" if returncode > 0 else
               "torch and vLLM choose their CPU kernels at run time; report this output with the CPU line above")
        return PartResult(part, False, f"{how}\nWhat to do: {fix}.\n--- output ---\n{tail}")
    kernels = ", ".join(f"{k}: {v}" for k, v in result.items() if k != "token")
    return PartResult(part, True, kernels)


def check(backend: str, draft: Path | None, model: Path | None, timeout_s: float,
          parts: Sequence[str] = PARTS) -> list[PartResult]:
    from verifier.core.models import default_draft_path  # noqa: PLC0415

    cpu = read_cpu()
    results = []
    if "draft" in parts:
        draft_probe = probe_command("--probe", "draft", "--draft", str(draft or default_draft_path()))
        results.append(judge_draft(*run_probe(draft_probe, timeout_s), cpu))
    if "target" in parts:
        target_probe = probe_command("--probe", "target", "--backend", backend,
                                     *(["--model", str(model)] if model else []))
        results.append(judge_target(backend, *run_probe(target_probe, timeout_s), cpu))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["vllm", "torch"], default="vllm")
    parser.add_argument("--draft", type=Path, default=None, help="draft GGUF (default: the edge's default draft)")
    parser.add_argument("--model", type=Path, default=None, help="target (default: the prepared default target)")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--only", choices=PARTS, default=None,
                        help="check one part (an image with the verifier alone has no llama.cpp)")
    parser.add_argument("--probe", choices=["draft", "target"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe == "draft":
        print(RESULT_PREFIX + json.dumps(probe_draft(args.draft)), flush=True)
        return 0
    if args.probe == "target":
        print(RESULT_PREFIX + json.dumps(probe_target(args.backend, args.model)), flush=True)
        return 0
    print(f"CPU: {read_cpu().describe()}")
    results = check(args.backend, args.draft, args.model, args.timeout_s, (args.only,) if args.only else PARTS)
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.part}: {r.message}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
