"""What this CPU can run: its reported features, the llama.cpp (ggml) build options they allow,
and what a library built for other features lacks here.

Pure standard library, so the set-up can run it before anything is installed
(``python3 -m verifier.core.cpu cmake-args``). The rules:

- every ggml x86 option is turned on exactly when the CPU reports all the features that option
  compiles for (``GGML_NATIVE`` is off: ``-march=native`` would also switch on AMX);
- AMX is never built in. It is not enough that the CPU reports it, nor that the kernel grants the
  tile permission: on the 2026-11 VMs both held and llama.cpp's AMX kernels still crashed
  (SIGSEGV in ``ggml_backend_amx_mul_mat``). For a draft model's one-row decode steps AMX buys
  nothing measurable; the batched prefill is where it would help.
- a build is named by its key (the package version and the options), so a wheel made for one
  CPU is never taken for another's.
"""

from __future__ import annotations

import hashlib
import re
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Cpu:
    """The CPU as the kernel reports it: ``flags`` are /proc/cpuinfo's names (``avx2``, ``avx512f``)."""

    model: str
    flags: frozenset[str]

    def describe(self) -> str:
        """One line for logs and benchmark records: the model, its AVX-512 and AMX support."""
        avx512 = "AVX-512" if "avx512f" in self.flags else "no AVX-512"
        amx = "AMX reported" if "amx_tile" in self.flags else "no AMX"
        simd = "AVX2" if "avx2" in self.flags else ("AVX" if "avx" in self.flags else "no AVX")
        return f"{self.model} ({simd}, {avx512}, {amx})"


def parse_cpuinfo(text: str) -> Cpu:
    """The first processor's model name and flags from /proc/cpuinfo's text."""
    model, flags = "unknown CPU", ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = value
    return Cpu(model, frozenset(flags.split()))


def read_cpu(path: Path = CPUINFO) -> Cpu:
    return parse_cpuinfo(path.read_text() if path.exists() else "")


@dataclass(frozen=True)
class GgmlOption:
    """One of ggml's x86 CPU options: the cmake switch, the CPU features it compiles for, and the
    name llama.cpp's own system report gives it (``llama_print_system_info``)."""

    cmake: str
    needs: tuple[str, ...]
    reported_as: str


# ggml/src/ggml-cpu/CMakeLists.txt (llama.cpp in llama-cpp-python 0.3.36): each option's gcc flags
GGML_OPTIONS: tuple[GgmlOption, ...] = (
    GgmlOption("GGML_SSE42", ("sse4_2",), "SSE42"),
    GgmlOption("GGML_AVX", ("avx",), "AVX"),
    GgmlOption("GGML_F16C", ("f16c",), "F16C"),
    GgmlOption("GGML_FMA", ("fma",), "FMA"),
    GgmlOption("GGML_BMI2", ("bmi2",), "BMI2"),
    GgmlOption("GGML_AVX2", ("avx", "avx2"), "AVX2"),
    GgmlOption("GGML_AVX_VNNI", ("avx", "avx2", "avx_vnni"), "AVX_VNNI"),
    GgmlOption("GGML_AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"), "AVX512"),
    GgmlOption("GGML_AVX512_VBMI", ("avx512f", "avx512bw", "avx512vbmi"), "AVX512_VBMI"),
    GgmlOption("GGML_AVX512_VNNI", ("avx512f", "avx512bw", "avx512_vnni"), "AVX512_VNNI"),
    GgmlOption("GGML_AVX512_BF16", ("avx512f", "avx512bw", "avx512_bf16"), "AVX512_BF16"),
)
# never on (module docstring); named so that the build says so rather than leaving ggml's default
GGML_OFF = ("GGML_NATIVE", "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
X86_MARKERS = frozenset({"sse2", "lm"})  # every x86-64 CPU reports these


def is_x86_64(cpu: Cpu) -> bool:
    return X86_MARKERS <= cpu.flags


def chosen_options(flags: Iterable[str]) -> tuple[GgmlOption, ...]:
    """The ggml options a CPU with these features can run."""
    have = frozenset(flags)
    return tuple(opt for opt in GGML_OPTIONS if set(opt.needs) <= have)


def ggml_cmake_args(flags: Iterable[str]) -> list[str]:
    """The CMAKE_ARGS of a llama.cpp build for a CPU with these features. Every option is named,
    on or off: ggml turns SSE4.2 to BMI2 on by default when the native build is off."""
    on = {opt.cmake for opt in chosen_options(flags)}
    args = [f"-D{name}=OFF" for name in GGML_OFF]
    args += [f"-D{opt.cmake}={'ON' if opt.cmake in on else 'OFF'}" for opt in GGML_OPTIONS]
    return args


def level_name(flags: Iterable[str]) -> str:
    """A short human name of what a build uses: avx512, avx2, avx, sse42 or x86-64."""
    on = {opt.cmake for opt in chosen_options(flags)}
    for name, option in (("avx512", "GGML_AVX512"), ("avx2", "GGML_AVX2"), ("avx", "GGML_AVX"),
                         ("sse42", "GGML_SSE42")):
        if option in on:
            return name
    return "x86-64"


def build_key(package: str, cpu: Cpu, flags: Iterable[str] | None = None) -> str:
    """The name of a build: ``<level>-<hash of the package pin and options>``; ``flags`` (default:
    the CPU's) are the features built for. Two x86-64 CPUs that allow the same options share a
    key; elsewhere (a native build) the key covers the CPU's model and every flag."""
    if not is_x86_64(cpu):
        basis = [package, "native", cpu.model, *sorted(cpu.flags)]
        return "native-" + hashlib.sha256(" ".join(basis).encode()).hexdigest()[:12]
    chosen = cpu.flags if flags is None else frozenset(flags)
    digest = hashlib.sha256(" ".join([package, *ggml_cmake_args(chosen)]).encode()).hexdigest()[:12]
    return f"{level_name(chosen)}-{digest}"


def parse_system_info(text: str) -> frozenset[str]:
    """The features llama.cpp says it was compiled with, from ``llama_print_system_info()``
    (``CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | ...``): the names whose value is 1."""
    return frozenset(name for name, value in re.findall(r"([A-Z0-9_]+) = (\d+)", text) if value == "1")


def missing_features(compiled: Iterable[str], cpu: Cpu) -> dict[str, tuple[str, ...]]:
    """For each option a library was compiled with (names as its system report gives them), the
    features it needs that this CPU does not report. Empty: the CPU can run every option.
    AMX, never part of our builds, counts as missing unless the CPU reports it."""
    by_name = {opt.reported_as: opt.needs for opt in GGML_OPTIONS}
    by_name |= {"AMX_INT8": ("amx_tile", "amx_int8"), "AMX_BF16": ("amx_tile", "amx_bf16")}
    gaps: dict[str, tuple[str, ...]] = {}
    for name in compiled:
        lacking = tuple(f for f in by_name.get(name, ()) if f not in cpu.flags)
        if lacking:
            gaps[name] = lacking
    return gaps


def fix_line(cpu: Cpu) -> str:
    return ("Fix: `make clean-llama setup` rebuilds llama-cpp-python for this CPU "
            f"(options: {' '.join(ggml_cmake_args(cpu.flags))}).")


def explain_gaps(compiled: Iterable[str], cpu: Cpu) -> str:
    """The message for a library compiled for features this CPU lacks ('' when it lacks none)."""
    gaps = missing_features(compiled, cpu)
    if not gaps:
        return ""
    return ("It was compiled for features this CPU does not report: "
            + "; ".join(f"{name} needs {', '.join(flags)}" for name, flags in sorted(gaps.items()))
            + ". It would die with SIGILL on the first kernel that uses them (a copied .venv, a wheel from a "
            "shared pip cache or a Docker layer built elsewhere).")


def explain_exit(part: str, returncode: int, cpu: Cpu, compiled: Iterable[str] = ()) -> str:
    """What to tell a user when ``part`` (a probe subprocess) ended with ``returncode`` (negative:
    killed by that signal): the signal, the likely cause, the CPU, and what to do."""
    if returncode >= 0:
        return f"{part} failed (exit code {returncode}) on {cpu.describe()}"
    number = -returncode
    sig = signal.Signals(number).name if number in {s.value for s in signal.Signals} else f"signal {number}"
    lines = [f"{part} crashed with {sig} on {cpu.describe()}."]
    gaps = explain_gaps(compiled, cpu)
    if gaps:
        lines.append(gaps)
    elif sig == "SIGILL":
        lines.append("SIGILL is an instruction this CPU does not have: the library was built for another CPU.")
    if sig == "SIGSEGV" and "amx_tile" in cpu.flags:
        lines.append("This CPU reports AMX; llama.cpp's AMX kernels crashed on such VMs. Tandem's own builds "
                     "leave AMX out: check that no other llama-cpp-python build is installed.")
    lines.append(fix_line(cpu))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m verifier.core.cpu describe|cmake-args|key PACKAGE`` for the Makefile.
    ``TANDEM_CPU_FLAGS`` (space-separated /proc/cpuinfo names) builds for a lower CPU than this one."""
    import os  # noqa: PLC0415 - only the command line reads the environment

    args = list(sys.argv[1:] if argv is None else argv)
    cpu = read_cpu()
    override = os.environ.get("TANDEM_CPU_FLAGS", "").split()
    flags = frozenset(override) if override else cpu.flags
    if not args or args[0] not in {"describe", "cmake-args", "key"} or (args[0] == "key" and len(args) != 2):
        print(main.__doc__, file=sys.stderr)
        return 2
    if args[0] == "describe":
        print(cpu.describe())
    elif args[0] == "cmake-args":  # elsewhere than x86-64: llama.cpp's own native defaults
        print(" ".join(ggml_cmake_args(flags)) if is_x86_64(cpu) else "")
    else:
        print(build_key(args[1], cpu, flags))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
