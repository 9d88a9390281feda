"""The vLLM engine arguments' merge rules, parsing and CPU binding (pure: no vLLM import)."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier.backends.vllm_args import (
    EngineArgsError,
    TandemArgs,
    cpu_binding,
    live_engine_args,
    local_world_size,
    located,
    merge_engine_args,
    read_engine_args,
)
from verifier.settings import VerifierSettings

ROUTE = {"model": "/m", "max_logprobs": -1, **live_engine_args(4)}


def test_json_yaml_and_files_are_read(tmp_path: Path) -> None:
    assert read_engine_args(None) == {} and read_engine_args("  ") == {}
    assert read_engine_args('{"tensor_parallel_size": 4, "kv-cache-dtype": "fp8"}') == {
        "tensor_parallel_size": 4, "kv_cache_dtype": "fp8"}  # vLLM's flag spelling is taken too
    yaml_file = tmp_path / "engine.yaml"
    yaml_file.write_text("tensor_parallel_size: 8\npipeline_parallel_size: 2\nenable_chunked_prefill: true\n")
    assert read_engine_args(str(yaml_file)) == {"tensor_parallel_size": 8, "pipeline_parallel_size": 2,
                                                "enable_chunked_prefill": True}
    json_file = tmp_path / "engine.json"
    json_file.write_text('{"quantization": "awq"}')
    assert read_engine_args(str(json_file)) == {"quantization": "awq"}
    (tmp_path / "empty.yaml").write_text("")
    assert read_engine_args(str(tmp_path / "empty.yaml")) == {}


@pytest.mark.parametrize(("text", "message"), [
    ('{"tensor_parallel_size": 4', "not a JSON object"),
    ("/no/such/file.yaml", "neither a JSON object nor a file"),
    ("[1, 2]", "neither a JSON object nor a file"),
])
def test_unreadable_engine_args_are_named(text: str, message: str) -> None:
    with pytest.raises(EngineArgsError, match=message):
        read_engine_args(text)


def test_a_file_holding_a_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(EngineArgsError, match="must be an object.*got list"):
        read_engine_args(str(path))


def test_operator_args_win_over_defaults_and_the_route_wins_over_all() -> None:
    tandem = TandemArgs(given={}, defaults={"dtype": "float32", "block_size": 32, "enforce_eager": True})
    merged = merge_engine_args(tandem, {"dtype": "bfloat16", "tensor_parallel_size": 2}, ROUTE)
    assert merged["dtype"] == "bfloat16" and merged["block_size"] == 32 and merged["tensor_parallel_size"] == 2
    assert merged["model"] == "/m" and merged["max_logprobs"] == -1
    assert merged["speculative_config"]["num_speculative_tokens"] == 4


def test_a_given_setting_and_an_engine_argument_must_agree() -> None:
    tandem = TandemArgs(given={"block_size": 16}, defaults={"dtype": "float32"})
    assert merge_engine_args(tandem, {"block_size": 16}, ROUTE)["block_size"] == 16
    with pytest.raises(EngineArgsError, match=r"block_size=32 contradicts --vllm-block-size \(block_size=16\)"):
        merge_engine_args(tandem, {"block_size": 32}, ROUTE)


@pytest.mark.parametrize("key", ["model", "scheduler_cls", "speculative_config", "max_logprobs",
                                 "skip_tokenizer_init", "structured_outputs_config"])
def test_what_tandem_sets_is_refused_with_its_reason(key: str) -> None:
    with pytest.raises(EngineArgsError, match=f"engine argument {key} is set by Tandem: .+"):
        merge_engine_args(TandemArgs(given={}, defaults={}), {key: "x"}, ROUTE)


def test_the_live_routes_arguments_are_refused_even_when_the_route_is_off() -> None:
    with pytest.raises(EngineArgsError, match="scheduler_cls is set by Tandem"):
        merge_engine_args(TandemArgs(given={}, defaults={}), {"scheduler_cls": "x"}, {"model": "/m"})


def test_local_world_size_splits_the_workers_over_the_nodes() -> None:
    assert local_world_size({}) == 1
    assert local_world_size({"tensor_parallel_size": 4}) == 4
    assert local_world_size({"tensor_parallel_size": 8, "pipeline_parallel_size": 2, "nnodes": 2}) == 8
    assert local_world_size({"tensor_parallel_size": 2, "nnodes": 2}) == 1


def test_cpu_binding_cuts_the_usable_cores_into_equal_runs() -> None:
    assert cpu_binding([0, 1], 2) == "0|1"
    assert cpu_binding([7, 4, 5, 6, 0, 1, 2, 3], 2) == "0,1,2,3|4,5,6,7"
    assert cpu_binding([0, 1, 2], 2) == "0|1"  # the odd core is left to the server
    assert cpu_binding([3], 1) == "3"
    with pytest.raises(EngineArgsError, match="4 CPU workers need 4 cores at least; 2 usable"):
        cpu_binding([0, 1], 4)


def test_located_names_the_field() -> None:
    assert located(("tensor_parallel_size",), "bad") == "tensor_parallel_size: bad"
    assert located((), "bad") == "bad"
    assert located(("cache", 0, "dtype"), "bad") == "cache.dtype: bad"


def test_settings_given_through_flags_or_environment_are_known(monkeypatch: pytest.MonkeyPatch) -> None:
    assert VerifierSettings().vllm_given() == frozenset()
    assert VerifierSettings(vllm_block_size=16, dtype="bfloat16").vllm_given() == {"block_size", "dtype"}
    monkeypatch.setenv("TANDEM_VERIFIER_VLLM_MAX_NUM_SEQS", "32")
    monkeypatch.setenv("TANDEM_VERIFIER_VLLM_ENGINE_ARGS", '{"tensor_parallel_size": 2}')
    settings = VerifierSettings()
    assert settings.vllm_given() == {"max_num_seqs"}
    assert read_engine_args(settings.vllm_engine_args) == {"tensor_parallel_size": 2}
