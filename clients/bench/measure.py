"""One streamed request through the edge, timed on the client side, and per-mode summaries
(acceptance as ``clients.bench.metrics`` defines it)."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from clients.bench.metrics import RoundCounts
from verifier.core import bounds


@dataclass(frozen=True)
class Mode:
    """A way of serving a request; adding one to MODES is all the harness needs."""

    name: str
    tandem: dict[str, Any]  # the request's `tandem` extension
    lossless: bool  # greedy output (token ids) must equal cloud-only's
    bound: str  # which analytic bound applies: cloud | edge | stop_and_wait | pipelined
    draft: str = "default"  # which edge serves it: "default" or "alt" (--alt-draft); "vllm": vLLM's own server
    inflight: int = 3  # pipelined: rounds in flight at most (the edge's --max-inflight default)


VANILLA = {"mode": "speculative", "gamma": 4, "confidence_threshold": 0.0, "pipeline": False}
PICOSPEC = {"mode": "speculative", "gamma": 4, "confidence_threshold": 0.0, "pipeline": True}
# PipeSD-style: windows of up to 8 tokens cut by the dual threshold, (R1, R2) tuned online by Bayesian
# optimisation, each window uploaded in batches as drafted (the DP plan), waiting for each verification
PIPESD = {"mode": "speculative", "gamma": 8, "pipeline": False, "trigger": "tuned", "upload": "planned"}

MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("cloud", {"mode": "cloud"}, True, "cloud"),
        Mode("edge", {"mode": "draft"}, False, "edge"),
        # plain speculative decoding: stop-and-wait, always gamma 4, no confidence cut-off
        Mode("vanilla", VANILLA, True, "stop_and_wait"),
        # PicoSpec-style: drafting goes on during verification (rollback on rejection), gamma 4, no cut-off
        Mode("picospec", PICOSPEC, True, "pipelined"),
        Mode("pipesd", PIPESD, True, "stop_and_wait"),
        # Tandem: the edge's own defaults (mode auto: the fastest path by its estimates; pipelined
        # speculation with rounds cut by the draft's confidence, or cloud streaming)
        Mode("tandem", {"mode": "auto"}, True, "pipelined"),
        # the edge's defaults, always speculating (pipelined)
        Mode("tandem-pipelined", {"mode": "speculative"}, True, "pipelined"),
        # the edge's defaults, but waiting for each round (Tandem before the pipeline)
        Mode("tandem-serial", {"mode": "speculative", "pipeline": False}, True, "stop_and_wait"),
        # rounds cut by the rejection predictor instead (needs --predictor)
        Mode("tandem-predictor", {"mode": "auto", "trigger": "predictor"}, True, "pipelined"),
        # the edge's defaults with the dual threshold tuned online (Bayesian optimisation)
        Mode("tandem-tuned", {"mode": "auto", "trigger": "tuned"}, True, "pipelined"),
        # the same modes with the alternative draft (--alt-draft), for side-by-side draft comparisons
        Mode("edge-alt", {"mode": "draft"}, False, "edge", draft="alt"),
        Mode("vanilla-alt", VANILLA, True, "stop_and_wait", draft="alt"),
        Mode("picospec-alt", PICOSPEC, True, "pipelined", draft="alt"),
        Mode("pipesd-alt", PIPESD, True, "stop_and_wait", draft="alt"),
        Mode("tandem-tuned-alt", {"mode": "auto", "trigger": "tuned"}, True, "pipelined", draft="alt"),
        Mode("tandem-alt", {"mode": "auto"}, True, "pipelined", draft="alt"),
        # the strongest baseline a user could pick instead: the target streamed by vLLM's own OpenAI
        # server, the client on the edge's side of the emulated link
        Mode("vllm-serve", {}, True, "cloud", draft="vllm"),
    )
}


class BenchError(RuntimeError):
    pass


@dataclass
class RequestResult:
    scenario: str
    mode: str
    prompt_id: int
    category: str
    text: str
    completion_tokens: int
    ttft_s: float
    total_s: float
    delta_times_s: list[float]
    stats: dict[str, Any]
    bytes_up: int
    bytes_down: int
    edge_cpu_s: float
    token_ids: list[int] | None = None  # the output token ids (``return_token_ids``); None: the server sent none
    repeat: int = 0  # which pass over the prompts (``--repeats``) it belongs to


@dataclass
class StreamReader:
    """A streamed chat completion, read line by line: the text and when each piece arrived, the
    output token ids (``return_token_ids``, vLLM's extension: the edge sends them all on the
    choice's last chunk, vLLM each chunk's own), the ``tandem`` statistics and the usage."""

    mode: str  # named in errors
    t0: float
    text: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds from t0 to each piece of text
    token_ids: list[int] | None = None  # None while no chunk has carried any
    stats: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    done: bool = False  # [DONE] read

    def feed(self, line: str, now: float) -> None:
        if not line.startswith("data: "):
            return
        payload = line[6:]
        if payload == "[DONE]":
            self.done = True
            return
        obj = json.loads(payload)
        if "error" in obj:
            raise BenchError(f"{self.mode}: {obj['error']['message']}")
        if obj.get("choices"):
            choice = obj["choices"][0]
            content = choice["delta"].get("content")
            if content:
                self.times.append(now - self.t0)
                self.text.append(content)
            if choice.get("token_ids") is not None:
                self.token_ids = [*(self.token_ids or []), *choice["token_ids"]]
            if choice.get("finish_reason"):
                self.stats = obj.get("tandem", {})
        elif obj.get("usage"):
            self.usage = obj["usage"]


def run_request(edge_url: str, messages: list[dict[str, str]], mode: Mode, max_tokens: int,
                counters: Any, edge_cpu: Any, scenario: str, prompt_id: int, category: str,
                repeat: int = 0) -> RequestResult:
    """One greedy request, streamed, with its output token ids (the edge and vLLM's server both
    take vLLM's ``return_token_ids``): the greedy identity check compares them."""
    body: dict[str, Any] = {"model": "SmolLM2-135M-Instruct", "messages": messages, "max_tokens": max_tokens,
                            "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
                            "return_token_ids": True}
    if mode.tandem:
        body["tandem"] = mode.tandem
    up0, down0, cpu0 = counters.bytes_up, counters.bytes_down, edge_cpu()
    t0 = time.perf_counter()
    reader = StreamReader(mode.name, t0)
    with httpx.stream("POST", f"{edge_url}/v1/chat/completions", json=body, timeout=600) as resp:
        if resp.status_code != 200:
            resp.read()
            raise BenchError(f"{mode.name}: HTTP {resp.status_code}: {resp.text}")
        for line in resp.iter_lines():
            reader.feed(line, time.perf_counter())
            if reader.done:
                break
    total = time.perf_counter() - t0
    times = reader.times
    return RequestResult(
        scenario=scenario, mode=mode.name, prompt_id=prompt_id, category=category, text="".join(reader.text),
        completion_tokens=int(reader.usage.get("completion_tokens", 0)), ttft_s=times[0] if times else total,
        total_s=total, delta_times_s=times, stats=reader.stats, bytes_up=counters.bytes_up - up0,
        bytes_down=counters.bytes_down - down0, edge_cpu_s=edge_cpu() - cpu0, token_ids=reader.token_ids,
        repeat=repeat,
    )


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


@dataclass
class ModeSummary:
    scenario: str
    mode: str
    requests: int
    tokens: int
    ttft_ms_median: float
    tpot_ms_median: float
    tpot_ms_p90: float
    tokens_per_s: float  # all repeats pooled: their tokens over their summed request times
    acceptance_rate: float  # the acceptance figures: clients.bench.metrics
    accepted_per_round: float
    tokens_per_round: float
    alpha_per_token: float
    rounds_per_token: float
    rows_per_token: float  # rows the verifier scored (each round's drafts and one more) per output token
    stale_rounds: int
    wasted_drafts_per_token: float
    bytes_up_per_token: float
    bytes_down_per_token: float
    cloud_ms_per_token: float
    edge_cpu_ms_per_token: float
    bound_tokens_per_s: float
    measured_over_bound: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokens_per_s(results: list[RequestResult]) -> float:
    """Output tokens over the summed request times (the requests ran one at a time)."""
    total_s = sum(r.total_s for r in results)
    return sum(r.completion_tokens for r in results) / total_s if total_s else 0.0


def summarise(results: list[RequestResult], mode: Mode, rtt_s: float) -> ModeSummary:
    tokens = sum(r.completion_tokens for r in results)
    tpots = [(r.delta_times_s[-1] - r.delta_times_s[0]) / (r.completion_tokens - 1)
             for r in results if r.completion_tokens > 1 and len(r.delta_times_s) > 1]
    s = [r.stats for r in results]
    counts = RoundCounts.total(RoundCounts.from_stats(x) for x in s)
    rounds, drafted = counts.rounds, counts.drafted
    draft_ms = sum(x.get("draft_ms", 0.0) for x in s)
    compute_ms = sum(x.get("verify_compute_ms", 0.0) for x in s)
    alpha, figures = counts.alpha_per_token, counts.figures()
    tps = tokens_per_s(results)
    t_step = compute_ms / 1000 / rounds if rounds else 0.0
    cloud = bounds.cloud_tokens_per_s(max(1, tokens // max(1, len(results))), t_step, rtt_s) if t_step else 0.0
    speculative = 0.0
    if drafted:
        gamma = drafted / rounds
        t_draft = draft_ms / 1000 / drafted
        speculative = bounds.pipelined_tokens_per_s(alpha, gamma, t_draft, rtt_s, t_step, mode.inflight) \
            if mode.bound == "pipelined" else bounds.stop_and_wait_tokens_per_s(alpha, gamma, t_draft, rtt_s, t_step)
    if mode.bound == "edge":
        bound = bounds.edge_tokens_per_s(draft_ms / 1000 / tokens) if tokens else 0.0
    elif mode.tandem.get("mode") == "auto":
        # mode auto serves each request the fastest way it estimates: held to the faster path's bound
        bound = max(cloud, speculative)
    elif mode.bound == "cloud" or not drafted:  # a speculating mode that drafted nothing streamed, as the cloud
        bound = cloud
    else:
        bound = speculative
    return ModeSummary(
        scenario=results[0].scenario if results else "", mode=mode.name, requests=len(results), tokens=tokens,
        ttft_ms_median=round(statistics.median([r.ttft_s for r in results]) * 1000, 1) if results else 0.0,
        tpot_ms_median=round(statistics.median(tpots) * 1000, 2) if tpots else 0.0,
        tpot_ms_p90=round(_pct(tpots, 0.9) * 1000, 2),
        tokens_per_s=round(tps, 2),
        acceptance_rate=figures["acceptance_rate"], accepted_per_round=figures["accepted_per_round"],
        tokens_per_round=figures["tokens_per_round"], alpha_per_token=figures["alpha_per_token"],
        rounds_per_token=round(rounds / tokens, 4) if tokens else 0.0,
        rows_per_token=round((drafted + rounds) / tokens, 3) if tokens else 0.0,
        stale_rounds=sum(x.get("stale_rounds", 0) for x in s),
        wasted_drafts_per_token=round(sum(x.get("wasted", 0) for x in s) / tokens, 3) if tokens else 0.0,
        bytes_up_per_token=round(sum(r.bytes_up for r in results) / tokens, 1) if tokens else 0.0,
        bytes_down_per_token=round(sum(r.bytes_down for r in results) / tokens, 1) if tokens else 0.0,
        cloud_ms_per_token=round(compute_ms / tokens, 2) if tokens else 0.0,
        edge_cpu_ms_per_token=round(sum(r.edge_cpu_s for r in results) * 1000 / tokens, 2) if tokens else 0.0,
        bound_tokens_per_s=round(bound, 2),
        measured_over_bound=round(tps / bound, 3) if bound else 0.0,
    )
