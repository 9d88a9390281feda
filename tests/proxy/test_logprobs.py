"""The target's logprobs through the edge (in memory, the real OpenAI SDK): every output token's
logprob is the target's at its position, whichever path produced it, streamed or not; the
legacy completions shape and echo."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import openai
import pytest

from proxy.openai.schema import ChatCompletionRequest
from tests.harness import EOS, BigramBackend, Harness, LetterTokenizer, V, start
from verifier.core.logprobs import log_softmax

TARGET = np.random.default_rng(3).normal(0.0, 1.5, size=(V, V)).astype(np.float32)
TARGET[:, EOS] = -3.0
LOGPROBS = log_softmax(TARGET)  # row t: the target's logprobs after token t
MESSAGES: Any = [{"role": "user", "content": "hi"}]
PIECE = LetterTokenizer().piece


async def harness() -> Harness:
    h = await start(BigramBackend(logits_of=lambda t: TARGET[t]))
    h.drafters[0].logits_of = lambda t: TARGET[t]  # drafts the target's greedy choice, mostly accepted
    return h


def check_entries(content: list[Any], text: str, first_prev: int, top_n: int) -> None:
    """Each entry is its token's logprob after the previous token, with the row's best top_n."""
    assert "".join(c.token for c in content) == text
    prev = first_prev
    for c in content:
        token = ord(c.token) - ord("a") + 1
        assert c.bytes == list(PIECE(token))
        assert c.logprob == pytest.approx(LOGPROBS[prev, token], abs=1e-5)
        best = np.argsort(-LOGPROBS[prev], kind="stable")[:top_n]
        assert [ord(t.token) - ord("a") + 1 for t in c.top_logprobs] == best.tolist()
        assert [t.logprob for t in c.top_logprobs] == pytest.approx(LOGPROBS[prev, best].tolist(), abs=1e-5)
        prev = token


def last_prompt_token(h: Harness) -> int:
    request = ChatCompletionRequest.model_validate({"model": "bigram", "messages": MESSAGES})
    return h.service.intake.prompts.chat(request)[-1]


def sdk(h: Harness) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://edge.test/v1", api_key="unused", max_retries=0,
                              http_client=h.edge_http())


@pytest.mark.parametrize("tandem", [{"mode": "speculative", "gamma": 3}, {"mode": "speculative", "pipeline": True},
                                    {"mode": "cloud"}])
def test_chat_logprobs_are_the_targets_streamed_or_not(tandem: dict[str, Any]) -> None:
    async def body() -> None:
        h = await harness()
        client = sdk(h)
        full = await client.chat.completions.create(model="bigram", messages=MESSAGES, temperature=0, max_tokens=12,
                                                    logprobs=True, top_logprobs=3, extra_body={"tandem": tandem})
        text = full.choices[0].message.content or ""
        assert full.choices[0].logprobs is not None and full.choices[0].logprobs.content is not None
        content = full.choices[0].logprobs.content
        assert len(content) == len(text) == 12  # one letter per token
        check_entries(content, text, last_prompt_token(h), 3)
        stream = await client.chat.completions.create(model="bigram", messages=MESSAGES, temperature=0, max_tokens=12,
                                                      logprobs=True, top_logprobs=3, stream=True,
                                                      extra_body={"tandem": tandem})
        streamed = [e async for chunk in stream if chunk.choices and chunk.choices[0].logprobs
                    for e in chunk.choices[0].logprobs.content or []]
        assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
        if tandem["mode"] == "speculative":
            assert full.model_extra and full.model_extra["tandem"]["accepted"] > 0
        plain = await client.chat.completions.create(model="bigram", messages=MESSAGES, temperature=0, max_tokens=12,
                                                     extra_body={"tandem": tandem})
        assert plain.choices[0].logprobs is None and plain.choices[0].message.content == text
        await h.aclose()

    asyncio.run(body())


def test_sampled_logprobs_follow_the_sampled_tokens() -> None:
    async def body() -> None:
        h = await harness()
        r = await sdk(h).chat.completions.create(model="bigram", messages=MESSAGES, temperature=1.0, seed=4,
                                                 max_tokens=16, logprobs=True,
                                                 extra_body={"tandem": {"mode": "speculative", "gamma": 4}})
        assert r.choices[0].logprobs is not None and r.choices[0].logprobs.content is not None
        content = r.choices[0].logprobs.content
        assert all(not c.top_logprobs for c in content)  # top_logprobs 0: the tokens' own only
        check_entries(content, r.choices[0].message.content or "", last_prompt_token(h), 0)
        await h.aclose()

    asyncio.run(body())


def test_completions_logprobs_shape_and_echo() -> None:
    async def body() -> None:
        h = await harness()
        client = sdk(h)
        r = await client.completions.create(model="bigram", prompt="cab", temperature=0, max_tokens=6, logprobs=2)
        lp = r.choices[0].logprobs
        assert lp is not None and lp.tokens is not None and lp.token_logprobs is not None
        assert "".join(lp.tokens) == r.choices[0].text and lp.text_offset == list(range(6))
        assert lp.top_logprobs is not None and all(len(top) == 2 for top in lp.top_logprobs)
        prev = LetterTokenizer().encode("cab", special=False)[-1]
        for token, value in zip(lp.tokens, lp.token_logprobs):
            t = ord(token) - ord("a") + 1
            assert value == pytest.approx(LOGPROBS[prev, t], abs=1e-5)
            prev = t
        echoed = await client.completions.create(model="bigram", prompt="cab", temperature=0, max_tokens=6,
                                                 echo=True)
        assert echoed.choices[0].text == "cab" + r.choices[0].text
        stream = await client.completions.create(model="bigram", prompt="cab", temperature=0, max_tokens=6,
                                                 echo=True, stream=True)
        assert "".join([c.choices[0].text async for c in stream if c.choices]) == "cab" + r.choices[0].text
        # echo with logprobs: the prompt's tokens scored by the target too (the first has no context)
        both = await client.completions.create(model="bigram", prompt="cab", temperature=0, max_tokens=6,
                                               echo=True, logprobs=1)
        blp = both.choices[0].logprobs
        ids = LetterTokenizer().encode("cab", special=True)  # the harness's letters: j, h, i
        pieces = [PIECE(t).decode() for t in ids]
        assert blp is not None and blp.tokens == [*pieces, *lp.tokens] and blp.text_offset == list(range(9))
        assert blp.token_logprobs is not None and blp.token_logprobs[0] is None
        assert blp.token_logprobs[1] == pytest.approx(LOGPROBS[ids[0], ids[1]], abs=1e-5)
        assert blp.token_logprobs[2] == pytest.approx(LOGPROBS[ids[1], ids[2]], abs=1e-5)
        assert blp.token_logprobs[3:] == pytest.approx(lp.token_logprobs, abs=1e-6)
        streamed = await client.completions.create(model="bigram", prompt="cab", temperature=0, max_tokens=6,
                                                   echo=True, logprobs=1, stream=True)
        tokens = [t async for c in streamed if c.choices and c.choices[0].logprobs
                  for t in c.choices[0].logprobs.tokens or []]
        assert tokens == blp.tokens
        await h.aclose()

    asyncio.run(body())


def test_logprobs_in_draft_mode_are_400_naming_them() -> None:
    async def body() -> None:
        h = await harness()
        resp = await h.edge_http().post("/v1/chat/completions", json={
            "model": "bigram", "messages": MESSAGES, "logprobs": True, "tandem": {"mode": "draft"}})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "logprobs"
        await h.aclose()

    asyncio.run(body())
