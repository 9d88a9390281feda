"""Greedy output through the edge is token-identical to the target's own greedy decoding.

The reference is an independent code path: transformers' ``generate`` on the same float32
weights, one token at a time, in this test process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

from proxy.tokenizer import Tokenizer
from tests.conftest import MODEL_ID, Server
from tests.e2e.paths import assert_speculated
from verifier.core.chat_template import ChatTemplate
from verifier.core.models import default_target_dir, target_gguf_path

pytestmark = pytest.mark.integration

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Give me three tips for staying focused while studying.",
    "Write a Python function that returns the square of a number.",
    "Explain what a black hole is in two sentences.",
]
MAX_TOKENS = 40


@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[Tokenizer, ChatTemplate, AutoModelForCausalLM]]:
    torch.set_num_threads(1)
    tok = Tokenizer(target_gguf_path())
    template = ChatTemplate(tok.chat_template, tok.bos_text, tok.eos_text)
    model = AutoModelForCausalLM.from_pretrained(default_target_dir(), dtype=torch.float32)
    model.eval()
    yield tok, template, model


class OpenAIPenalties(LogitsProcessor):
    """OpenAI's frequency and presence penalties over the generated tokens, for transformers'
    ``generate`` (which has none): the independent oracle of ``verifier.core.logits``."""

    def __init__(self, prompt_len: int, frequency: float, presence: float) -> None:
        self.prompt_len, self.frequency, self.presence = prompt_len, frequency, presence

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        counts = torch.bincount(input_ids[0, self.prompt_len:], minlength=scores.shape[-1])[: scores.shape[-1]]
        penalised: torch.FloatTensor = scores - counts * self.frequency - (counts > 0) * self.presence
        return penalised


def target_greedy(ref: tuple[Tokenizer, ChatTemplate, AutoModelForCausalLM], prompt: str,
                  **fields: Any) -> tuple[str, int]:
    """transformers' greedy decoding, with the OpenAI fields as its own logits processors."""
    tok, template, model = ref
    ids = tok.encode(template.render([{"role": "user", "content": prompt}]), special=True)
    options: dict[str, Any] = {}
    if "repetition_penalty" in fields:
        options["repetition_penalty"] = fields["repetition_penalty"]
    if "min_tokens" in fields:
        options["min_new_tokens"] = fields["min_tokens"]
    if "logit_bias" in fields:
        options["sequence_bias"] = {(int(k),): v for k, v in fields["logit_bias"].items()}
    if "frequency_penalty" in fields or "presence_penalty" in fields:
        options["logits_processor"] = LogitsProcessorList([OpenAIPenalties(
            len(ids), fields.get("frequency_penalty", 0.0), fields.get("presence_penalty", 0.0))])
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=MAX_TOKENS, do_sample=False, eos_token_id=list(tok.stop_token_ids),
                             pad_token_id=tok.eos_id, **options)
    new = out[0, len(ids):].tolist()
    if new and new[-1] in tok.stop_token_ids:
        return tok.token_bytes(new[:-1]).decode("utf-8", "replace"), len(new)
    return tok.token_bytes(new).decode("utf-8", "replace"), len(new)


def edge_reply(edge: Server, prompt: str, fields: dict[str, Any] | None = None,
               **tandem: object) -> tuple[tuple[str, int], dict[str, Any]]:
    """The edge's greedy answer as (text, completion tokens), and its ``tandem`` object."""
    client = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300)
    extra = {**(fields or {}), **({"tandem": tandem} if tandem else {})}
    r = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=MAX_TOKENS,
        extra_body=extra or None)
    assert r.usage is not None and r.model_extra is not None
    return (r.choices[0].message.content or "", r.usage.completion_tokens), r.model_extra["tandem"]


def edge_greedy(edge: Server, prompt: str, fields: dict[str, Any] | None = None, **tandem: object) -> tuple[str, int]:
    return edge_reply(edge, prompt, fields, **tandem)[0]


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipelined", "stop_and_wait"])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_speculative_greedy_equals_target_greedy(edge: Server, reference, prompt: str,  # type: ignore[no-untyped-def]
                                                 pipeline: bool) -> None:
    got, stats = edge_reply(edge, prompt, mode="speculative", pipeline=pipeline)
    assert_speculated(stats, "pipelined" if pipeline else "stop_and_wait")
    assert got == target_greedy(reference, prompt)


def test_mode_auto_is_lossless_on_the_path_it_reports(edge: Server, reference) -> None:  # type: ignore[no-untyped-def]
    got, stats = edge_reply(edge, PROMPTS[0])
    assert stats["mode"] == "auto" and set(stats["path"].split(">")) <= {"pipelined", "stop_and_wait", "cloud"}
    assert stats["why"] and got == target_greedy(reference, PROMPTS[0])


@pytest.mark.parametrize(("fields", "prompt"), [
    ({"frequency_penalty": 1.0, "presence_penalty": 0.5}, PROMPTS[2]),
    ({"repetition_penalty": 1.3}, PROMPTS[2]),
    ({"logit_bias": {"28": 6.0, "30": -100.0}}, PROMPTS[2]),  # "," favoured, "." banned (SmolLM2 token ids)
    ({"min_tokens": MAX_TOKENS}, PROMPTS[0]),  # its answer ends well before MAX_TOKENS
])
def test_greedy_with_penalties_bias_and_min_tokens_equals_transformers(  # type: ignore[no-untyped-def]
        edge: Server, reference, fields: dict[str, Any], prompt: str) -> None:
    want = target_greedy(reference, prompt, **fields)
    assert want != target_greedy(reference, prompt)  # the field changes this output
    speculative, stats = edge_reply(edge, prompt, fields, mode="speculative")
    assert_speculated(stats, rejected=False)
    assert speculative == want
    cloud, stats = edge_reply(edge, prompt, fields, mode="cloud")
    assert stats["path"] == "cloud" and stats["drafted"] == 0 and cloud == want


@pytest.mark.parametrize("mode", ["speculative", "cloud"])
def test_logprobs_are_the_targets(edge: Server, reference, mode: str) -> None:  # type: ignore[no-untyped-def]
    tok, template, model = reference
    prompt = PROMPTS[1]
    ids = tok.encode(template.render([{"role": "user", "content": prompt}]), special=True)
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=16, do_sample=False, eos_token_id=list(tok.stop_token_ids),
                             pad_token_id=tok.eos_id, output_scores=True, return_dict_in_generate=True)
    new = out.sequences[0, len(ids):].tolist()
    logprobs = [torch.log_softmax(s[0].double(), dim=-1) for s in out.scores]
    client = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300)
    r = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": prompt}], temperature=0,
                                       max_tokens=16, logprobs=True, top_logprobs=2,
                                       extra_body={"tandem": {"mode": mode}})
    assert r.choices[0].logprobs is not None and r.choices[0].logprobs.content is not None
    stats = r.model_extra["tandem"]  # type: ignore[index]
    if mode == "speculative":
        assert_speculated(stats, rejected=False)
    else:
        assert stats["path"] == "cloud" and stats["drafted"] == 0, stats
    content = r.choices[0].logprobs.content
    assert len(content) == len(new) == 16
    for entry, token, lp in zip(content, new, logprobs):
        assert bytes(entry.bytes) == tok.piece(token)
        assert entry.logprob == pytest.approx(float(lp[token]), abs=2e-3)
        best = torch.topk(lp, 2).indices.tolist()
        assert [bytes(t.bytes) for t in entry.top_logprobs] == [tok.piece(i) for i in best]


def test_echo_with_logprobs_scores_the_prompt_with_the_target(edge: Server, reference) -> None:  # type: ignore[no-untyped-def]
    tok, _, model = reference
    prompt = "The capital of France is"
    ids = tok.encode(prompt, special=True)
    with torch.inference_mode():
        rows = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    client = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300)
    r = client.completions.create(model=MODEL_ID, prompt=prompt, echo=True, logprobs=1, max_tokens=3, temperature=0)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.token_logprobs is not None and lp.tokens is not None
    assert r.choices[0].text.startswith(prompt) and len(lp.tokens) == len(ids) + 3
    assert lp.token_logprobs[0] is None
    for i in range(1, len(ids)):
        assert lp.token_logprobs[i] == pytest.approx(float(rows[i - 1, ids[i]]), abs=2e-3)


def test_every_mode_and_gamma_gives_the_same_greedy_text(edge: Server) -> None:
    prompt = PROMPTS[2]
    replies = [edge_reply(edge, prompt, mode="speculative", gamma=g) for g in (1, 3, 7)]
    replies += [edge_reply(edge, prompt, mode="speculative", gamma=4, confidence_threshold=c) for c in (0.0, 0.9, 1.0)]
    for _, stats in replies:
        assert_speculated(stats, rejected=False)
    results = {got for got, _ in replies}
    results.add(edge_greedy(edge, prompt, mode="cloud"))
    assert len(results) == 1


def test_confidence_threshold_cuts_rounds_short(edge: Server) -> None:
    client = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300)

    def stats(threshold: float) -> dict[str, int]:
        r = client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": PROMPTS[4]}], temperature=0, max_tokens=24,
            extra_body={"tandem": {"mode": "speculative", "gamma": 4, "confidence_threshold": threshold}})
        return r.model_extra["tandem"]  # type: ignore[index,no-any-return]

    never, always = stats(0.0), stats(1.0)
    assert never["drafted"] > 0 and never["drafted"] >= 3 * never["rounds"]  # full rounds (the last may be short)
    # no token is that certain: every round carries its first draft token only (the last one, at the
    # token budget, may carry none)
    assert always["rounds"] - 1 <= always["drafted"] <= always["rounds"] and 12 <= always["rounds"] <= 24


def test_ngram_drafter_is_lossless_and_drafts_from_the_prompt(ngram_edge: Server, reference) -> None:  # type: ignore[no-untyped-def]
    prompt = ("Repeat this sentence exactly: The quick brown fox jumps over the lazy dog near the river bank. "
              "Then repeat it once more.")
    client = openai.OpenAI(base_url=f"{ngram_edge.url}/v1", api_key="unused", max_retries=0, timeout=300)
    r = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": prompt}],
                                       temperature=0, max_tokens=MAX_TOKENS,
                                       extra_body={"tandem": {"mode": "speculative"}})
    stats = r.model_extra["tandem"]  # type: ignore[index]
    assert_speculated(stats, rejected=False)
    assert stats["accepted"] > 0  # lookup found the repeated text
    assert (r.choices[0].message.content, r.usage.completion_tokens) == target_greedy(reference, prompt)  # type: ignore[union-attr]


def test_ngram_edge_refuses_edge_only_mode(ngram_edge: Server) -> None:
    import httpx

    resp = httpx.post(f"{ngram_edge.url}/v1/chat/completions", json={
        "model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "tandem": {"mode": "draft"}}, timeout=60)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unsupported_mode"


def test_ngram_edge_refuses_a_confidence_threshold(ngram_edge: Server) -> None:
    import httpx

    resp = httpx.post(f"{ngram_edge.url}/v1/chat/completions", json={
        "model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}],
        "tandem": {"confidence_threshold": 0.5}}, timeout=60)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "tandem.confidence_threshold"
