"""verifier.core.cpu: the llama.cpp build options a CPU allows, with made-up and real CPUs."""

from __future__ import annotations

import signal

from verifier.core.cpu import (
    Cpu,
    build_key,
    explain_exit,
    ggml_cmake_args,
    level_name,
    missing_features,
    parse_cpuinfo,
    parse_system_info,
    read_cpu,
)

PIN = "llama-cpp-python==0.3.36"
BASE = "fpu sse sse2 lm ssse3 sse4_1 sse4_2 popcnt"
# the AMD EPYC of 2026-12-02 (no AVX-512) and the Xeon of 2026-11 (AVX-512, AMX reported)
EPYC = Cpu("AMD EPYC", frozenset(f"{BASE} fma avx f16c avx2 bmi1 bmi2".split()))
XEON = Cpu("Intel Xeon", EPYC.flags | frozenset(
    "avx512f avx512dq avx512cd avx512bw avx512vl avx512vbmi avx512_vnni avx512_bf16 avx_vnni amx_tile amx_int8 "
    "amx_bf16".split()))
OLD = Cpu("Sandy Bridge", frozenset(f"{BASE} avx".split()))
BARE = Cpu("x86-64 baseline", frozenset(BASE.split()))


def options(cpu: Cpu) -> dict[str, str]:
    return dict(arg[2:].split("=") for arg in ggml_cmake_args(cpu.flags))


def test_an_avx2_cpu_gets_avx2_and_never_avx512_or_amx() -> None:
    opts = options(EPYC)
    assert {k for k, v in opts.items() if v == "ON"} == {"GGML_SSE42", "GGML_AVX", "GGML_F16C", "GGML_FMA",
                                                          "GGML_BMI2", "GGML_AVX2"}
    assert opts["GGML_AVX512"] == opts["GGML_AMX_INT8"] == opts["GGML_NATIVE"] == "OFF"
    assert level_name(EPYC.flags) == "avx2"


def test_an_avx512_cpu_gets_its_extensions_but_no_amx_though_it_reports_it() -> None:
    opts = options(XEON)
    assert opts["GGML_AVX512"] == opts["GGML_AVX512_VNNI"] == opts["GGML_AVX512_BF16"] == opts["GGML_AVX_VNNI"] == "ON"
    assert opts["GGML_AMX_TILE"] == opts["GGML_AMX_INT8"] == opts["GGML_AMX_BF16"] == "OFF"
    assert level_name(XEON.flags) == "avx512"


def test_every_option_is_named_so_that_ggml_defaults_never_switch_one_on() -> None:
    """ggml turns SSE4.2 to BMI2 on by default when the native build is off: a CPU with only AVX
    must see them off in so many words."""
    opts = options(OLD)
    assert opts["GGML_AVX"] == "ON" and opts["GGML_AVX2"] == opts["GGML_FMA"] == opts["GGML_F16C"] == "OFF"
    assert opts["GGML_BMI2"] == "OFF" and level_name(OLD.flags) == "avx"
    assert all(v == "OFF" for k, v in options(BARE).items() if k != "GGML_SSE42") and level_name(BARE.flags) == "sse42"


def test_an_option_is_on_only_with_every_feature_it_compiles_for() -> None:
    no_bw = Cpu("AVX-512F without BW", XEON.flags - {"avx512bw"})
    opts = options(no_bw)
    assert opts["GGML_AVX512"] == opts["GGML_AVX512_VNNI"] == opts["GGML_AVX512_VBMI"] == "OFF"
    assert opts["GGML_AVX2"] == "ON"


def test_a_build_key_follows_the_options_not_the_cpu_name() -> None:
    assert build_key(PIN, EPYC) == build_key(PIN, Cpu("another AVX2 CPU", EPYC.flags | {"sha_ni"}))
    assert build_key(PIN, EPYC) != build_key(PIN, XEON)
    assert build_key(PIN, EPYC) != build_key("llama-cpp-python==0.3.37", EPYC)
    assert build_key(PIN, XEON, EPYC.flags) == build_key(PIN, EPYC)  # building for a smaller CPU
    assert build_key(PIN, EPYC).startswith("avx2-") and build_key(PIN, XEON).startswith("avx512-")
    arm = Cpu("Neoverse", frozenset({"fp", "asimd"}))
    assert build_key(PIN, arm).startswith("native-") and build_key(PIN, arm) != build_key(PIN, Cpu("x", arm.flags))


def test_cpuinfo_is_parsed_from_the_first_processor() -> None:
    text = ("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 lm\n\n"
            "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    cpu = parse_cpuinfo(text)
    assert cpu.model == "AMD EPYC 9B14" and cpu.flags == {"fpu", "sse2", "avx2", "lm"}
    assert "no AVX-512" in cpu.describe() and "AMX" in cpu.describe()


def test_llama_cpp_system_info_names_what_it_was_compiled_with() -> None:
    info = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | " \
           "AVX512_VNNI = 0 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
    assert parse_system_info(info) == {"SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2", "AVX512", "LLAMAFILE",
                                       "OPENMP", "REPACK"}


def test_a_library_built_for_avx512_lacks_features_on_the_avx2_cpu() -> None:
    compiled = {"AVX", "AVX2", "FMA", "AVX512", "AVX512_VNNI", "LLAMAFILE"}
    assert missing_features(compiled, XEON) == {}
    gaps = missing_features(compiled, EPYC)
    assert set(gaps) == {"AVX512", "AVX512_VNNI"} and "avx512f" in gaps["AVX512"]
    assert set(missing_features({"AMX_INT8"}, EPYC)) == {"AMX_INT8"}


def test_the_message_for_a_crash_names_the_signal_the_part_and_the_missing_features() -> None:
    text = explain_exit("llama.cpp loading the draft", -int(signal.SIGILL), EPYC, {"AVX2", "AVX512"})
    assert "llama.cpp loading the draft crashed with SIGILL on AMD EPYC" in text
    assert "AVX512 needs avx512f" in text and "make clean-llama setup" in text
    assert "-DGGML_AVX512=OFF" in text and "-DGGML_AVX2=ON" in text
    assert "exit code 3" in explain_exit("x", 3, EPYC)


def test_this_machines_cpu_is_x86_64_or_reports_its_model() -> None:
    cpu = read_cpu()
    assert cpu.model and cpu.describe().startswith(cpu.model)
