"""The edge through the official OpenAI SDK and curl, against real servers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.conftest import MODEL_ID, Server
from tests.e2e.paths import assert_path

pytestmark = pytest.mark.integration


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def verifier_sessions(verifier: Server) -> int:
    return int(httpx.get(f"{verifier.url}/v1/stats").json()["sessions"])


def wait_sessions_zero(verifier: Server, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    n = verifier_sessions(verifier)
    while n and time.monotonic() < deadline:
        time.sleep(0.1)
        n = verifier_sessions(verifier)
    return n


def test_models_lists_the_served_model(edge: Server) -> None:
    models = client(edge).models.list()
    assert [m.id for m in models.data] == [MODEL_ID]


def test_chat_non_streaming(edge: Server, verifier: Server) -> None:
    resp = client(edge).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0, max_tokens=24,
    )
    assert resp.object == "chat.completion"
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and "Paris" in (choice.message.content or "")
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert wait_sessions_zero(verifier) == 0


def test_chat_streaming_with_usage(edge: Server) -> None:
    stream = client(edge).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Write one sentence about the sea."}],
        temperature=0.8, top_p=0.95, seed=11, max_tokens=30, stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0 and text.strip()


@pytest.mark.parametrize("mode", ["speculative", "cloud"])
def test_seed_makes_sampling_reproducible(edge: Server, mode: str) -> None:
    def once() -> str:
        r = client(edge).chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Name a color and a fruit."}],
            temperature=1.0, seed=1234, max_tokens=20, extra_body={"tandem": {"mode": mode}})
        assert_path(r.model_extra["tandem"], mode)  # type: ignore[index]
        return r.choices[0].message.content or ""
    assert once() == once()


def test_max_tokens_gives_length(edge: Server) -> None:
    r = client(edge).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Count from one to fifty in words."}],
        temperature=0, max_completion_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 5


@pytest.mark.parametrize("mode", ["speculative", "cloud"])
def test_stop_string_is_not_emitted(edge: Server, mode: str) -> None:
    forced = {"tandem": {"mode": mode}}
    r = client(edge).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0, max_tokens=24, extra_body=forced)
    assert_path(r.model_extra["tandem"], mode)  # type: ignore[index]
    base = r.choices[0].message.content or ""
    assert "Paris" in base
    cut = base.index("Paris") + 2  # stop in the middle of a token: "Pa|ris"
    stop = base[cut - 4: cut]
    for stream in (False, True):
        kwargs = dict(model=MODEL_ID, messages=[{"role": "user", "content": "What is the capital of France?"}],
                      temperature=0, max_tokens=24, stop=[stop], extra_body=forced)
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in client(edge).chat.completions.create(
                stream=True, **kwargs) if c.choices)
        else:
            r = client(edge).chat.completions.create(**kwargs)
            assert r.choices[0].finish_reason == "stop"
            text = r.choices[0].message.content or ""
        assert text == base[: base.index(stop)]


def test_completions_endpoint(edge: Server) -> None:
    r = client(edge).completions.create(model=MODEL_ID, prompt="The capital of France is", temperature=0,
                                        max_tokens=8)
    assert r.object == "text_completion" and r.choices[0].text and r.usage is not None
    chunks = list(client(edge).completions.create(model=MODEL_ID, prompt="Once upon a time", temperature=0,
                                                  max_tokens=8, stream=True))
    assert "".join(c.choices[0].text for c in chunks).strip()


def test_curl_streams_sse(edge: Server) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    body = json.dumps({"model": MODEL_ID, "messages": [{"role": "user", "content": "Say hello."}],
                       "max_tokens": 12, "temperature": 0, "stream": True})
    out = subprocess.run([curl, "-sN", f"{edge.url}/v1/chat/completions", "-H", "content-type: application/json",
                          "-d", body], capture_output=True, text=True, timeout=120, check=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][6:])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"


def test_client_disconnect_frees_the_session(edge: Server, verifier: Server) -> None:
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
            "max_tokens": 400, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{edge.url}/v1/chat/completions", json=body, timeout=60) as resp:
        for i, _ in enumerate(resp.iter_lines()):
            if i > 6:
                break  # hang up mid-stream
    assert wait_sessions_zero(verifier) == 0


# ---- errors: status code and OpenAI envelope ----------------------------------------------
def post(server: Server, path: str, body: object, raw: bool = False) -> httpx.Response:
    if raw:
        return httpx.post(f"{server.url}{path}", content=body, headers={"content-type": "application/json"},
                          timeout=60)
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code
    return err


MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body,param", [
    ({"model": MODEL_ID, "messages": MSG, "temperature": 2.5}, "temperature"),
    ({"model": MODEL_ID, "messages": MSG, "top_p": 0}, "top_p"),
    ({"model": MODEL_ID, "messages": MSG, "top_p": 1.5}, "top_p"),
    ({"model": MODEL_ID, "messages": []}, "messages"),
    ({"model": MODEL_ID, "messages": [{"role": "wizard", "content": "x"}]}, None),
    ({"model": MODEL_ID, "messages": MSG, "n": 17}, "n"),
    ({"model": MODEL_ID, "messages": MSG, "tools": [{"type": "function"}]}, "tools.0.function"),
    ({"model": MODEL_ID, "messages": MSG, "response_format": {"type": "xml"}}, "response_format"),
    ({"model": MODEL_ID, "messages": MSG, "logit_bias": {"49152": 1}}, "logit_bias"),
    ({"model": MODEL_ID}, "messages"),
])
def test_bad_values_are_400(edge: Server, body: dict[str, object], param: str | None) -> None:
    err = assert_error(post(edge, "/v1/chat/completions", body), 400)
    if param:
        assert err["param"] == param


def test_malformed_json_is_400(edge: Server) -> None:
    assert_error(post(edge, "/v1/chat/completions", b'{"model": "x", "messages": [', raw=True), 400, "invalid_json")


def test_unknown_model_is_404(edge: Server) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client(edge).chat.completions.create(model="gpt-17", messages=MSG)  # type: ignore[arg-type]
    assert err.value.status_code == 404
    assert_error(post(edge, "/v1/completions", {"model": "nope", "prompt": "x"}), 404, "model_not_found")


def test_prompt_longer_than_context_is_400(edge: Server) -> None:
    long = "word " * 3000
    assert_error(post(edge, "/v1/chat/completions", {"model": MODEL_ID, "messages": [
        {"role": "user", "content": long}]}), 400, "context_length_exceeded")
    assert_error(post(edge, "/v1/chat/completions", {"model": MODEL_ID, "messages": MSG, "max_tokens": 100000}),
                 400, "context_length_exceeded")


def test_verifier_unavailable_is_503(orphan_edge: Server) -> None:
    body = {"model": MODEL_ID, "messages": MSG, "max_tokens": 5}
    assert_error(post(orphan_edge, "/v1/chat/completions", body), 503, "verifier_unavailable")
    assert_error(post(orphan_edge, "/v1/chat/completions", {**body, "stream": True}), 503, "verifier_unavailable")
    with pytest.raises(openai.InternalServerError):
        client(orphan_edge).chat.completions.create(model=MODEL_ID, messages=MSG)  # type: ignore[arg-type]
    assert httpx.get(f"{orphan_edge.url}/health").json()["verifier"] == "unreachable"


def test_edge_only_mode_works_without_verifier(orphan_edge: Server) -> None:
    r = client(orphan_edge).chat.completions.create(
        model=MODEL_ID, messages=MSG, max_tokens=6, temperature=0, extra_body={"tandem": {"mode": "draft"}})
    assert r.choices[0].message.content


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (1.5, 0.9)])
def test_long_sampled_generation_completes(edge: Server, temperature: float, top_p: float) -> None:
    """Regression: peaked draft distributions carry ~1e-13 tail probabilities on the wire."""
    r = client(edge).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Write a short story about a robot."}],
        temperature=temperature, top_p=top_p, seed=3, max_tokens=64, extra_body={"tandem": {"mode": "speculative"}})
    assert r.usage is not None and r.usage.completion_tokens > 0
    assert_path(r.model_extra["tandem"], "speculative")  # type: ignore[index]  # drafts went up the wire


def test_error_inside_a_stream_is_an_sse_error_event_then_done(logs_dir) -> None:  # type: ignore[no-untyped-def]
    """A verifier that dies mid-stream under --on-cloud-loss fail: the client gets the tokens so
    far, then an error event."""
    from tests.conftest import start_server

    ver = start_server("verifier.cli", ["--backend", "torch", "--threads", "1"], logs_dir / "doomed-verifier.log")
    edge = start_server("proxy.cli", ["--verifier-url", ver.url, "--threads", "1", "--slots", "1", "--n-ctx", "1024",
                                      "--verifier-timeout-s", "5", "--on-cloud-loss", "fail"],
                        logs_dir / "doomed-edge.log")
    try:
        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Write a long story about a cat."}],
                "max_tokens": 300, "temperature": 0, "stream": True}
        events = []
        with httpx.stream("POST", f"{edge.url}/v1/chat/completions", json=body, timeout=60) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    if len(events) == 5:
                        ver.proc.kill()
        assert events[-1] == "[DONE]"
        err = json.loads(events[-2])
        assert err["error"]["code"] == "verifier_unavailable" and err["error"]["type"]
        assert any(json.loads(e)["choices"][0]["delta"].get("content") for e in events[1:4])
    finally:
        edge.stop()
        ver.stop()


def test_concurrent_requests_do_not_mix(edge: Server, verifier: Server) -> None:
    """More requests than draft slots at once: each gets exactly its sequential greedy answer."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = ["Name three colors.", "What is 2 plus 2?", "Say something about rivers.", "List two animals."]

    def ask(p: str, mode: str) -> tuple[str, int]:
        r = client(edge).chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": p}],
                                                 temperature=0, max_tokens=20, extra_body={"tandem": {"mode": mode}})
        stats = r.model_extra["tandem"]  # type: ignore[index]
        assert stats["path"] == ("cloud" if mode == "cloud" else "pipelined")
        assert mode == "cloud" or (stats["rounds"] > 0 and stats["drafted"] > 0)
        return r.choices[0].message.content or "", stats["drafted"]

    sequential = [ask(p, "cloud")[0] for p in prompts]
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:  # 4 requests on 2 draft slots
        parallel = list(pool.map(lambda p: ask(p, "speculative"), prompts))
    assert [text for text, _ in parallel] == sequential
    assert wait_sessions_zero(verifier) == 0


def test_both_servers_export_metrics_that_move(edge: Server, verifier: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def total(url: str, name: str) -> float:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)

    before = (total(edge.url, "tandem_edge_output_tokens_total"), total(verifier.url, "tandem_verifier_rounds_total"))
    client = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300)
    client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
                                   temperature=0, extra_body={"tandem": {"mode": "speculative"}})
    after = (total(edge.url, "tandem_edge_output_tokens_total"), total(verifier.url, "tandem_verifier_rounds_total"))
    assert after[0] - before[0] == 8 and after[1] > before[1]


def test_the_helm_test_hooks_smoke_check_passes_on_a_real_verifier(verifier: Server) -> None:
    ok = subprocess.run([sys.executable, "-m", "clients.smoke"], env={**os.environ, "VERIFIER_URL": verifier.url},
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "round verified" in ok.stdout and "verifier ok" in ok.stdout, ok.stdout + ok.stderr
    dead = subprocess.run([sys.executable, "-m", "clients.smoke"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "VERIFIER_URL": verifier.url + "/nothing-here"})
    assert dead.returncode != 0
