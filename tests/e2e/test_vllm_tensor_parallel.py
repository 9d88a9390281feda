"""vLLM engine arguments reach the engine (issue 28): the vLLM backend with
``--vllm-engine-args '{"tensor_parallel_size": 2}'`` (vLLM's CPU backend runs tensor parallel
across worker processes) gives, through a speculating edge, the greedy output of the same
model with one worker; so does a two-node layout on loopback (the verifier as node 0, a
``tandem-verifier --vllm-headless`` worker node as node 1, one tensor-parallel worker each,
what the chart's multi-node layout starts); bad engine arguments are a one-line start-up error
with vLLM's reason.

The target is SmolLM2-135M with its attention heads padded to divide by 2 (``tests.padded_model``:
zero-weight heads, the same function), because its 9 heads do not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from transformers import AutoModelForCausalLM

from clients.procs import free_port, spawn, stop_process
from tests.conftest import MODEL_ID, ROOT, Server, start_server
from tests.padded_model import pad_attention_heads
from verifier.backends import BackendOptions, check_backend
from verifier.backends.vllm_args import EngineArgsError
from verifier.core.models import default_target_dir

pytestmark = pytest.mark.integration

PROMPTS = ["The three most important things to know about the French Revolution are",
           "Once upon a time, in a small village by the sea,", "def fibonacci(n):\n    \"\"\"Return the n-th"]
MAX_TOKENS = 32


@pytest.fixture(scope="module")
def padded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pad_attention_heads(default_target_dir(), tmp_path_factory.mktemp("padded") / "SmolLM2-135M-padded")


def test_the_padded_model_computes_the_originals_logits(padded: Path) -> None:
    ids = torch.tensor([[1, 504, 2175, 3400, 314, 3728, 28, 30, 216, 198]])
    with torch.inference_mode():
        original = AutoModelForCausalLM.from_pretrained(default_target_dir(), dtype=torch.float32)(ids).logits
        copy = AutoModelForCausalLM.from_pretrained(padded, dtype=torch.float32)(ids).logits
    assert copy.shape == original.shape
    torch.testing.assert_close(copy, original, rtol=0, atol=1e-4)
    assert torch.equal(copy.argmax(-1), original.argmax(-1))


def verifier_args(model: Path, engine_args: dict[str, Any]) -> list[str]:
    return ["--backend", "vllm", "--model", str(model), "--max-context", "2048",
            "--vllm-engine-args", json.dumps(engine_args), "--session-ttl-s", "60"]


@contextmanager
def verifier_and_edge(model: Path, engine_args: dict[str, Any], logs: Path, name: str,
                      env: dict[str, str] | None = None) -> Iterator[tuple[Server, Server]]:
    verifier = start_server("verifier.cli", verifier_args(model, engine_args), logs / f"{name}-verifier.log",
                            timeout=400, env=env)
    try:
        edge = start_server("proxy.cli", ["--verifier-url", verifier.url, "--threads", "1", "--n-ctx", "2048"],
                            logs / f"{name}-edge.log")
        try:
            yield verifier, edge
        finally:
            edge.stop()
    finally:
        verifier.stop()


def answers(edge: Server, mode: str) -> list[tuple[list[int], dict[str, Any]]]:
    """Each prompt's greedy token ids and ``tandem`` object in ``mode``."""
    client = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300)
    out = []
    for prompt in PROMPTS:
        reply = client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0,
                                          extra_body={"tandem": {"mode": mode}, "return_token_ids": True})
        out.append((reply.choices[0].model_extra["token_ids"], reply.model_extra["tandem"]))  # type: ignore[index]
    return out


@pytest.fixture(scope="module")
def runs(padded: Path, logs_dir: Path) -> dict[str, Any]:
    """The same model with 1 and with 2 tensor-parallel workers: cloud-only and speculative answers."""
    out: dict[str, Any] = {}
    for tp in (1, 2):
        with verifier_and_edge(padded, {"tensor_parallel_size": tp}, logs_dir, f"tp{tp}") as (verifier, edge):
            out[f"info{tp}"] = httpx.get(f"{verifier.url}/v1/info").json()
            out[f"metrics{tp}"] = httpx.get(f"{verifier.url}/metrics").text
            out[f"cloud{tp}"] = answers(edge, "cloud")
            out[f"speculative{tp}"] = answers(edge, "speculative")
    with worker_node(padded, logs_dir) as layout, \
            verifier_and_edge(padded, {**layout, "node_rank": 0}, logs_dir, "node0",
                              env={"VLLM_CPU_OMP_THREADS_BIND": node_core(0)}) as (verifier, edge):
        out["info_nodes"] = httpx.get(f"{verifier.url}/v1/info").json()
        out["speculative_nodes"] = answers(edge, "speculative")
    return out


def node_core(rank: int) -> str:
    """The core a "node" of the loopback layout binds its worker to: the first and the last core
    this process may run on (the same one where it may run on one only)."""
    cores = sorted(os.sched_getaffinity(0))
    return str(cores[0] if rank == 0 else cores[-1])


@contextmanager
def worker_node(model: Path, logs: Path) -> Iterator[dict[str, Any]]:
    """Node 1 of a two-node layout (tensor parallel 2, one worker per node), as the chart's worker
    pods run it; yields the layout's engine arguments, less the node rank."""
    layout = {"tensor_parallel_size": 2, "nnodes": 2, "master_addr": "127.0.0.1", "master_port": free_port()}
    env = {**os.environ, "TANDEM_VERIFIER_VLLM_HEADLESS": "true", "VLLM_CPU_OMP_THREADS_BIND": node_core(1)}
    with (logs / "node1.log").open("wb") as fh:
        proc = spawn([sys.executable, "-m", "verifier.cli", *verifier_args(model, {**layout, "node_rank": 1})],
                     cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        yield layout
    finally:
        stop_process(proc)


def test_info_and_metrics_report_the_parallel_layout(runs: dict[str, Any]) -> None:
    for tp in (1, 2):
        engine = runs[f"info{tp}"]["engine"]
        assert engine["tensor_parallel_size"] == tp and engine["pipeline_parallel_size"] == 1
        assert engine["engine_args"] == {"tensor_parallel_size": tp} and engine["enforce_eager"] is True
        assert engine["dtype"] == "float32" and engine["max_model_len"] >= 2048
        (line,) = [x for x in runs[f"metrics{tp}"].splitlines() if x.startswith("tandem_verifier_backend_info{")]
        assert f'tensor_parallel_size="{tp}"' in line


def test_two_workers_give_one_workers_greedy_output_through_a_speculating_edge(runs: dict[str, Any]) -> None:
    for i, prompt in enumerate(PROMPTS):
        reference, _ = runs["cloud1"][i]
        assert len(reference) >= MAX_TOKENS // 2, (prompt, reference)
        for key in ("cloud2", "speculative1", "speculative2", "speculative_nodes"):
            tokens, stats = runs[key][i]
            assert tokens == reference, (key, prompt)
            if key.startswith("speculative"):
                assert stats["mode"] == "speculative" and stats["rounds"] > 0 and stats["drafted"] > 0, stats
                assert stats["verifier_route"] == "live" and stats["live_rounds"] > 0, stats
            else:
                assert stats["path"] == "cloud", stats


def test_the_two_node_layout_reports_its_nodes(runs: dict[str, Any]) -> None:
    engine = runs["info_nodes"]["engine"]
    assert engine["nodes"] == 2 and engine["tensor_parallel_size"] == 2 and engine["executor"] == "mp"
    assert engine["engine_args"]["node_rank"] == 0


def test_a_headless_node_needs_a_worker_rank() -> None:
    done = subprocess.run([sys.executable, "-m", "verifier.cli", "--backend", "vllm", "--vllm-engine-args",
                           '{"tensor_parallel_size": 2}'], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TANDEM_VERIFIER_VLLM_HEADLESS": "true"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "tandem-verifier: --vllm-headless runs a worker node: its engine arguments need nnodes > 1 and "
        "0 < node_rank < nnodes (got nnodes=1, node_rank=0); node 0 is the verifier")


def test_a_bad_engine_argument_is_a_one_line_start_up_error() -> None:
    done = subprocess.run([sys.executable, "-m", "verifier.cli", "--backend", "vllm", "--vllm-engine-args",
                           '{"tensor_parallel_size": 2}'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "tandem-verifier: vLLM refuses the engine arguments: Total number of attention heads (9) must be divisible "
        "by tensor parallel size (2).")


@pytest.mark.parametrize(("args", "reason"), [
    ({"no_such_argument": 1}, "vLLM refuses the engine arguments: AsyncEngineArgs.__init__() got an unexpected "
                              "keyword argument 'no_such_argument'"),
    ({"kv_cache_dtype": "fp7"}, "vLLM refuses the engine arguments: cache_dtype: Input should be 'auto'"),
    ({"max_num_seqs": 8}, "engine argument max_num_seqs=8 contradicts --vllm-max-num-seqs (max_num_seqs=16)"),
    ({"speculative_config": {"method": "ngram"}}, "engine argument speculative_config is set by Tandem: the edge's "
                                                  "drafts are the speculation"),
    ({"pipeline_parallel_size": 2}, "pipeline_parallel_size > 1 fails on vLLM 0.32's CPU backend by itself"),
], ids=["unknown", "bad-value", "contradicts-a-setting", "tandem-owns", "pipeline-on-cpu"])
def test_bad_engine_arguments_are_refused_before_the_model_loads(args: dict[str, Any], reason: str) -> None:
    options = BackendOptions(vllm_max_num_seqs=16, vllm_given=frozenset({"max_num_seqs"}), vllm_engine_args=args)
    with pytest.raises(EngineArgsError) as refused:
        check_backend("vllm", str(default_target_dir()), options)
    assert str(refused.value).startswith(reason)
