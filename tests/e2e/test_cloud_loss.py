"""The cloud fails under a live stream (real processes on loopback): the edge resumes losslessly,
or continues on its draft model and says so."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from clients.procs import free_port
from tests.conftest import MODEL_ID, Server, start_server

STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def stream_chat(edge: Server, body: dict[str, object], on_chunk: object = None) -> list[dict[str, object]]:
    """The parsed data events of a streamed chat completion; ``on_chunk(n)`` after the n-th."""
    events: list[dict[str, object]] = []
    with httpx.stream("POST", f"{edge.url}/v1/chat/completions", json={**body, "stream": True},
                      timeout=120) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            events.append(json.loads(line[6:]))
            if callable(on_chunk):
                on_chunk(len(events))
    return events


def content_of(events: list[dict[str, object]]) -> str:
    out = []
    for e in events:
        assert "error" not in e, e
        for choice in e["choices"]:  # type: ignore[attr-defined]
            out.append(choice["delta"].get("content") or "")
    return "".join(out)


@pytest.fixture()
def restartable(logs_dir: Path) -> Iterator[dict[str, Server]]:
    """A verifier on a fixed port (so it can be restarted where the edge looks) and an edge that
    waits for it (resume) with a short round deadline."""
    port = free_port()
    servers = {"verifier": start_server("verifier.cli", ["--backend", "torch", "--threads", "1"],
                                        logs_dir / "restart-verifier-1.log", port=port)}
    servers["edge"] = start_server(
        "proxy.cli", ["--verifier-url", servers["verifier"].url, "--threads", "1", "--slots", "1", "--n-ctx", "1024",
                      "--on-cloud-loss", "wait", "--cloud-wait-s", "120", "--round-timeout-s", "2"],
        logs_dir / "restart-edge.log")
    yield servers
    for server in servers.values():
        server.stop()


def test_stall_and_restart_mid_stream_resume_losslessly(restartable: dict[str, Server], logs_dir: Path) -> None:
    """A greedy speculative stream; after 10 chunks the verifier is frozen (SIGSTOP) for 4 s,
    longer than the round deadline; after 30 it is killed and a new one started on its port.
    The client sees one uninterrupted stream whose text is exactly the uninterrupted answer."""
    edge = restartable["edge"]
    body = {"model": MODEL_ID, "messages": STORY, "max_tokens": 120, "temperature": 0,
            "tandem": {"mode": "speculative"}}
    reference = httpx.post(f"{edge.url}/v1/chat/completions", json=body, timeout=120).json()
    expected = reference["choices"][0]["message"]["content"]
    assert reference["usage"]["completion_tokens"] == 120

    port = int(restartable["verifier"].url.rsplit(":", 1)[1])
    faults: list[str] = []
    edge_log = restartable["edge"].log

    def losses_logged() -> int:
        return edge_log.read_text(errors="replace").count('"msg": "verifier lost"')

    def thaw(pid: int) -> None:
        time.sleep(4)
        os.kill(pid, signal.SIGCONT)

    def on_chunk(n: int) -> None:
        ver = restartable["verifier"]
        if n == 10:
            os.kill(ver.proc.pid, signal.SIGSTOP)
            threading.Thread(target=thaw, args=(ver.proc.pid,), daemon=True).start()
            faults.append("stopped")
        elif n == 30:
            faults.append(f"stall losses {losses_logged()}")  # the frozen verifier missed the round deadline
            ver.proc.kill()
            ver.proc.wait()
            faults.append("killed")
            threading.Thread(target=restart, daemon=True).start()

    def restart() -> None:
        restartable["verifier"] = start_server("verifier.cli", ["--backend", "torch", "--threads", "1"],
                                               logs_dir / "restart-verifier-2.log", port=port)

    events = stream_chat(edge, body, on_chunk)
    assert faults[0] == "stopped" and faults[2] == "killed"
    stall_losses = int(faults[1].rsplit(" ", 1)[1])
    assert stall_losses >= 1, "the planned stall never made the edge lose the verifier"
    assert content_of(events) == expected  # nothing lost, nothing twice
    final = events[-1]["tandem"]
    assert isinstance(final, dict) and final["cloud_losses"] == losses_logged() > stall_losses  # the kill lost it too
    assert "degraded" not in final and final["path"].count("pipelined") == final["cloud_losses"] + 1
    assert all("degraded" not in (e.get("tandem") or {}) for e in events)
    # the restarted verifier holds no session once the request is over
    stats = httpx.get(f"{restartable['verifier'].url}/v1/stats").json()
    assert stats["sessions"] == 0


def test_draft_policy_answers_alone_and_says_so(logs_dir: Path) -> None:
    """No verifier at all, --on-cloud-loss draft: the draft model answers; the response is
    marked degraded (tandem.degraded, the fingerprint, a header, unverified tokens in usage)."""
    dead = f"http://127.0.0.1:{free_port()}"
    edge = start_server("proxy.cli", ["--verifier-url", dead, "--threads", "1", "--slots", "1", "--n-ctx", "512",
                                      "--on-cloud-loss", "draft", "--breaker-failures", "1"],
                        logs_dir / "draft-policy-edge.log")
    try:
        api = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=60)
        raw = api.chat.completions.with_raw_response.create(model=MODEL_ID, messages=STORY,  # type: ignore[arg-type]
                                                            max_tokens=12, temperature=0)
        assert raw.headers["x-tandem-degraded"] == "true"
        r = raw.parse()
        assert r.choices[0].message.content and r.system_fingerprint == "tandem-degraded"
        extra = r.model_extra or {}
        assert extra["tandem"]["degraded"] is True
        assert r.usage is not None and r.usage.model_extra == {"unverified_tokens": r.usage.completion_tokens}
        chunks = list(api.chat.completions.create(model=MODEL_ID, messages=STORY, max_tokens=12,  # type: ignore[arg-type]
                                                  temperature=0, stream=True))
        text_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
        assert text_chunks and all(c.system_fingerprint == "tandem-degraded" for c in text_chunks)
        assert "".join(c.choices[0].delta.content or "" for c in text_chunks) == r.choices[0].message.content
        health = httpx.get(f"{edge.url}/health").json()
        assert health["status"] == "degraded" and health["verifier"] == "unreachable"
        ready = httpx.get(f"{edge.url}/readyz")
        assert ready.status_code == 200 and ready.json()["verifier_circuit"] in ("open", "half_open")
        assert httpx.get(f"{edge.url}/livez").json() == {"status": "ok"}
    finally:
        edge.stop()


def test_a_link_outage_through_the_relay_resumes_losslessly(verifier: Server, logs_dir: Path) -> None:
    """The link emulator between edge and verifier cuts every connection and refuses new ones
    for 3 s, then holds every packet for 3 s (a stall), in one speculative stream: the text is
    the uninterrupted answer."""
    from clients.bench.link import Outage
    from clients.bench.relay import LinkSpec
    from clients.bench.testbed import RelayThread

    relay = RelayThread(LinkSpec(), int(verifier.url.rsplit(":", 1)[1]))
    edge = start_server("proxy.cli", ["--verifier-url", f"http://127.0.0.1:{relay.port}", "--threads", "1",
                                      "--slots", "1", "--n-ctx", "1024", "--round-timeout-s", "1"],
                        logs_dir / "relay-edge.log")
    try:
        body = {"model": MODEL_ID, "messages": STORY, "max_tokens": 80, "temperature": 0,
                "tandem": {"mode": "speculative"}}
        expected = httpx.post(f"{edge.url}/v1/chat/completions", json=body, timeout=120).json()[
            "choices"][0]["message"]["content"]

        def outage(mode: str) -> None:
            relay.relay.spec = LinkSpec(outages=(Outage(0.0, 3.0),), outage_mode=mode)
            relay.restart_clock()

        def on_chunk(n: int) -> None:
            if n == 5:
                outage("reset")
            elif n == 40:
                outage("stall")

        events = stream_chat(edge, body, on_chunk)
        assert content_of(events) == expected
        final = events[-1]["tandem"]
        assert isinstance(final, dict) and final["cloud_losses"] >= 1 and "degraded" not in final
        assert final["mode"] == "speculative" and final["rounds"] > 0 and final["drafted"] > 0, final
    finally:
        edge.stop()
        relay.stop()
