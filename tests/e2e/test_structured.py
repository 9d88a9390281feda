"""response_format through the edge with the default model pair: the output parses and follows
the schema, speculation gives the target's own constrained greedy output (transformers with the
same grammar mask as the reference), and a schema the engine rejects is a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from tests.conftest import MODEL_ID, Server
from tests.e2e.paths import assert_path
from tests.e2e.test_lossless import reference  # noqa: F401 - the shared transformers fixture
from verifier.core.grammar import Constraint, GrammarCompiler, GrammarSpec
from verifier.core.models import default_target_dir

pytestmark = pytest.mark.integration

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 150}},
          "required": ["name", "age"], "additionalProperties": False}
PROMPT = "Describe a fictional person as JSON with their name and age."
MAX_TOKENS = 48


class GrammarMask(LogitsProcessor):
    def __init__(self, constraint: Constraint, prompt_len: int) -> None:
        self.constraint, self.prompt_len = constraint, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        allowed = self.constraint.allowed(input_ids[0, self.prompt_len:].tolist())
        assert allowed is not None
        mask = torch.from_numpy(allowed[: scores.shape[-1]])
        masked: torch.FloatTensor = scores.masked_fill(~mask, float("-inf"))
        return masked


def target_constrained(ref: Any, schema: dict[str, Any]) -> str:
    tok, template, model = ref
    ids = tok.encode(template.render([{"role": "user", "content": PROMPT}]), special=True)
    stops = sorted(tok.stop_token_ids)
    constraint = GrammarCompiler.of_tokenizer_file(default_target_dir() / "tokenizer.json").compile(
        GrammarSpec.json_schema(schema, stops))
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=MAX_TOKENS, do_sample=False, eos_token_id=stops, pad_token_id=tok.eos_id,
                             logits_processor=LogitsProcessorList([GrammarMask(constraint, len(ids))]))
    new = [t for t in out[0, len(ids):].tolist() if t not in tok.stop_token_ids]
    return tok.token_bytes(new).decode("utf-8", "replace")


def ask(edge: Server, response_format: dict[str, Any], **kw: Any) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300)
    return client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": PROMPT}],
                                          max_tokens=MAX_TOKENS, response_format=response_format,  # type: ignore[arg-type]
                                          **kw)


def test_json_schema_greedy_is_the_targets_constrained_output(edge: Server, reference: Any) -> None:  # noqa: F811
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    spec = ask(edge, fmt, temperature=0, extra_body={"tandem": {"mode": "speculative"}})
    cloud = ask(edge, fmt, temperature=0, extra_body={"tandem": {"mode": "cloud"}})
    text = spec.choices[0].message.content or ""
    assert text == cloud.choices[0].message.content == target_constrained(reference, PERSON)
    assert spec.choices[0].finish_reason == "stop"
    person = json.loads(text)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int) and len(person["name"]) <= 24
    assert spec.model_extra and cloud.model_extra
    assert_path(spec.model_extra["tandem"], "speculative")
    assert_path(cloud.model_extra["tandem"], "cloud")
    assert spec.model_extra["tandem"]["accepted"] > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sampled_json_object_parses(edge: Server, reference: Any, seed: int) -> None:  # noqa: F811
    tok = reference[0]
    r = ask(edge, {"type": "json_object"}, temperature=0.8, seed=seed, max_completion_tokens=MAX_TOKENS,
            extra_body={"tandem": {"mode": "speculative"}})
    text = r.choices[0].message.content or ""
    assert r.model_extra and r.model_extra["tandem"]["drafted"] > 0
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:  # cut by max_tokens: a prefix of a JSON object, which the grammar engine still accepts
        assert r.choices[0].finish_reason == "length" and r.usage and r.usage.completion_tokens == MAX_TOKENS
        constraint = GrammarCompiler.of_tokenizer_file(default_target_dir() / "tokenizer.json").compile(
            GrammarSpec.json_schema({"type": "object"}, sorted(tok.stop_token_ids)))
        assert text.lstrip().startswith("{") and constraint.allowed(tok.encode(text, special=False)) is not None, text


def test_a_schema_the_engine_rejects_is_400_naming_response_format(edge: Server) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
        "a": {"type": "string", "pattern": "(unclosed"}}, "required": ["a"]}}}
    resp = httpx.post(f"{edge.url}/v1/chat/completions", timeout=60, json={
        "model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "response_format": bad})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "response_format"
