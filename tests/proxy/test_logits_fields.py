"""The OpenAI fields that shape the logits (penalties, logit_bias, min_tokens, top_k, min_p),
end to end in memory: greedy output through speculation equals a plain greedy decoding of
the target with the same processing, and cloud-only decoding agrees."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from tests.harness import EOS, BigramBackend, Harness, LetterTokenizer, V, start
from verifier.core.protocol import SamplingParams

TARGET = np.random.default_rng(1).normal(0.0, 1.0, size=(V, V)).astype(np.float32)
TARGET[:, EOS] = -1.0  # the end of turn is possible, rarely first choice...
TARGET[4, EOS] = 3.0  # ...except after 4


def reference(prompt: list[int], params: SamplingParams, max_tokens: int) -> list[int]:
    """The target's own greedy decoding with the processing, one token at a time."""
    proc = params.processing()
    out: list[int] = []
    while len(out) < max_tokens:
        last = (prompt + out)[-1]
        token = int(np.argmax(proc.apply(TARGET[last], prompt, out)))
        out.append(token)
        if token == EOS:
            break
    return out


def params_of(fields: dict[str, Any]) -> SamplingParams:
    return SamplingParams(
        presence_penalty=fields.get("presence_penalty", 0.0), frequency_penalty=fields.get("frequency_penalty", 0.0),
        repetition_penalty=fields.get("repetition_penalty", 1.0),
        logit_bias={int(k): v for k, v in fields.get("logit_bias", {}).items()},
        min_tokens=fields.get("min_tokens", 0), stop_token_ids=[EOS])


# (the fields, the field under test): the output differs without it
CASES: list[tuple[dict[str, Any], str]] = [
    ({"frequency_penalty": 1.5, "presence_penalty": 0.5}, "frequency_penalty"),
    ({"presence_penalty": 1.5}, "presence_penalty"),
    ({"repetition_penalty": 1.8}, "repetition_penalty"),
    ({"logit_bias": {"3": 4.0, "7": -100}}, "logit_bias"),
    ({"repetition_penalty": 1.8, "min_tokens": 12}, "min_tokens"),
    ({"frequency_penalty": -0.5, "top_k": 3, "min_p": 0.1}, ""),  # truncations change nothing greedy
]


@pytest.mark.parametrize(("fields", "under_test"), CASES)
def test_greedy_with_the_field_equals_the_processed_target(fields: dict[str, Any], under_test: str) -> None:
    async def body() -> None:
        h: Harness = await start(BigramBackend(logits_of=lambda t: TARGET[t]))
        prompt = LetterTokenizer().encode("cab", special=False)
        want = reference(prompt, params_of(fields), 20)
        if under_test:
            without = {k: v for k, v in fields.items() if k != under_test}
            assert want != reference(prompt, params_of(without), 20)  # the field matters here
        h.drafters[0].wrong = lambda p: p % 4 == 3  # drafts the processed target itself, but every 4th token
        h.drafters[0].logits_of = lambda t: TARGET[t]
        texts = []
        for tandem in ({"mode": "speculative", "gamma": 3}, {"mode": "speculative", "gamma": 5, "pipeline": True},
                       {"mode": "cloud"}):
            r = await h.edge_http().post("/v1/completions", json={
                "model": "bigram", "prompt": "cab", "max_tokens": 20, "temperature": 0, "tandem": tandem, **fields})
            assert r.status_code == 200, r.text
            texts.append(r.json()["choices"][0]["text"])
            stats = r.json()["tandem"]
            assert tandem["mode"] == "cloud" or stats["accepted"] > 0  # drafts were accepted, with the processing
        expected = "".join(LetterTokenizer().piece(t).decode() for t in want)
        assert texts == [expected] * 3
        await h.aclose()

    asyncio.run(body())


def test_a_bias_on_a_token_outside_the_vocabulary_is_400_naming_it() -> None:
    async def body() -> None:
        h = await start()
        r = await h.edge_http().post("/v1/completions", json={
            "model": "bigram", "prompt": "a", "logit_bias": {str(V): 1.0}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "logit_bias"
        await h.aclose()

    asyncio.run(body())
