"""OpenAI Predicted Outputs through the real edge (llama.cpp draft, torch verifier) and the
official SDK's ``prediction=``: the output is the target's own with any prediction, a right
prediction goes up in long rounds, usage counts the prediction's tokens as OpenAI defines them
(those that appear in the completion, and the rest), streamed usage too, and the refusals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from proxy.tokenizer import Tokenizer
from tests.conftest import MODEL_ID, Server
from tests.e2e.paths import assert_path, assert_speculated
from verifier.core.models import default_draft_path

pytestmark = pytest.mark.integration

ASK = [{"role": "user", "content": "Repeat this sentence exactly: The quick brown fox jumps over the lazy dog "
                                   "while the farmer sleeps under the old oak tree."}]
MAX_TOKENS = 40


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[Tokenizer]:
    yield Tokenizer(default_draft_path())


def ask(edge: Server, temperature: float = 0, **kwargs: Any) -> Any:
    extra = {"return_token_ids": True, **kwargs.pop("extra_body", {})}
    with openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300) as client:
        return client.chat.completions.create(model=MODEL_ID, messages=ASK, max_tokens=MAX_TOKENS,
                                              temperature=temperature, extra_body=extra, **kwargs)


def ids(reply: Any) -> list[int]:
    return list(reply.choices[0].model_extra["token_ids"])


def counts(reply: Any) -> tuple[int, int]:
    details = reply.usage.completion_tokens_details
    return details.accepted_prediction_tokens, details.rejected_prediction_tokens


def text_ids(reply: Any, tokenizer: Tokenizer) -> list[int]:
    """The answer's text as tokens: its output tokens less the end-of-turn token that ends it."""
    text = tokenizer.encode(reply.choices[0].message.content, special=False, add_bos=False)
    output = ids(reply)
    assert output[:len(text)] == text and len(output) - len(text) <= 1, (output, text)  # the text round-trips
    return text


@pytest.fixture(scope="module")
def plain(edge: Server) -> Any:
    """The target's own greedy answer: the cloud's decoding, no drafts."""
    reply = ask(edge, extra_body={"tandem": {"mode": "cloud"}})
    assert_path(reply.model_extra["tandem"], "cloud")
    assert reply.usage.completion_tokens_details is None  # no prediction: no prediction counts
    return reply


def test_a_right_prediction_goes_up_in_long_rounds_and_changes_nothing(edge: Server, plain: Any,
                                                                        tokenizer: Tokenizer) -> None:
    answer = plain.choices[0].message.content
    reply = ask(edge, prediction={"type": "content", "content": answer})
    assert ids(reply) == ids(plain)
    stats = reply.model_extra["tandem"]
    assert stats["path"] == "pipelined" and stats["why"] == "prediction", stats
    assert stats["prediction_accepted"] > 0 and stats["prediction_drafted"] >= stats["prediction_accepted"]
    assert stats["rounds"] < len(ids(plain)) / 2, stats  # rounds of many tokens each
    assert counts(reply) == (len(text_ids(plain, tokenizer)), 0)  # every token of the prediction is in the completion
    metrics = {line.split(" ")[0]: float(line.split(" ")[1]) for line in httpx.get(f"{edge.url}/metrics").text
               .splitlines() if line.startswith("tandem_edge_prediction")}
    assert metrics['tandem_edge_prediction_tokens_total{outcome="accepted"}'] >= len(text_ids(plain, tokenizer))
    assert metrics['tandem_edge_prediction_draft_tokens_total{outcome="accepted"}'] >= stats["prediction_accepted"]


def test_a_prediction_longer_than_the_answer_counts_the_rest_rejected(edge: Server, plain: Any,
                                                                      tokenizer: Tokenizer) -> None:
    prediction = plain.choices[0].message.content + " Then the dog wakes up and barks at the moon all night."
    reply = ask(edge, prediction={"type": "content", "content": [{"type": "text", "text": prediction}]})
    assert ids(reply) == ids(plain)
    assert reply.model_extra["tandem"]["why"] == "prediction" and reply.model_extra["tandem"]["rounds"] > 0
    predicted = len(tokenizer.encode(prediction, special=False, add_bos=False))
    answer = len(text_ids(plain, tokenizer))
    assert counts(reply) == (answer, predicted - answer)


def test_a_wrong_prediction_changes_nothing(edge: Server, plain: Any, tokenizer: Tokenizer) -> None:
    prediction = "import numpy as np\n\ndef mean(xs):\n    return np.sum(xs) / len(xs)\n"
    reply = ask(edge, prediction={"type": "content", "content": prediction},
                extra_body={"tandem": {"mode": "speculative"}})
    assert ids(reply) == ids(plain)
    assert_speculated(reply.model_extra["tandem"], rejected=False)  # drafts (the edge's own, mostly) verified
    accepted, rejected = counts(reply)
    assert accepted + rejected == len(tokenizer.encode(prediction, special=False, add_bos=False))
    assert accepted <= 3  # an unrelated text shares a token or two at most


def test_a_forced_speculative_edge_drafts_the_prediction(speculative_edge: Server, plain: Any) -> None:
    reply = ask(speculative_edge, prediction={"type": "content", "content": plain.choices[0].message.content})
    assert ids(reply) == ids(plain)
    stats = reply.model_extra["tandem"]
    assert stats["mode"] == "speculative" and stats["prediction_accepted"] > 0, stats


def test_streamed_usage_counts_the_prediction(edge: Server, plain: Any, tokenizer: Tokenizer) -> None:
    prediction = plain.choices[0].message.content + " And more."
    with openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300) as client:
        stream = client.chat.completions.create(model=MODEL_ID, messages=ASK, max_tokens=MAX_TOKENS, temperature=0,
                                                prediction={"type": "content", "content": prediction}, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    whole = ask(edge, prediction={"type": "content", "content": prediction})
    assert counts(whole)[0] == len(text_ids(plain, tokenizer))
    assert (usage.completion_tokens_details.accepted_prediction_tokens,
            usage.completion_tokens_details.rejected_prediction_tokens) == counts(whole)


def test_sampled_output_with_a_prediction_is_seeded_and_drafts_it(speculative_edge: Server, plain: Any) -> None:
    prediction = {"type": "content", "content": plain.choices[0].message.content}
    first, again = (ask(speculative_edge, prediction=prediction, temperature=0.8, top_p=0.95, seed=5)
                    for _ in range(2))
    assert ids(first) == ids(again)
    assert first.model_extra["tandem"]["prediction_drafted"] > 0


def test_completions_take_a_prediction(edge: Server, tokenizer: Tokenizer) -> None:
    prompt = "The days of the week are Monday, Tuesday,"
    with openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=300) as client:
        plain = client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=16, temperature=0,
                                          extra_body={"return_token_ids": True})
        text = plain.choices[0].text
        reply = client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=16, temperature=0,
                                          extra_body={"return_token_ids": True,
                                                      "prediction": {"type": "content", "content": text}})
    assert reply.choices[0].model_extra["token_ids"] == plain.choices[0].model_extra["token_ids"]
    assert reply.model_extra["tandem"]["prediction_drafted"] > 0
    assert reply.usage.completion_tokens_details.accepted_prediction_tokens == len(
        tokenizer.encode(text, special=False, add_bos=False))


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, "tools"),
    ({"prediction": {"type": "text", "content": "x"}}, "prediction"),
])
def test_refusals_name_the_field(edge: Server, fields: dict[str, Any], param: str) -> None:
    kwargs = {"prediction": {"type": "content", "content": "x"}, **fields}
    with openai.OpenAI(base_url=f"{edge.url}/v1", api_key="unused", max_retries=0, timeout=60) as client, \
            pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL_ID, messages=ASK, max_tokens=4, **kwargs)
    body: dict[str, Any] = err.value.body  # type: ignore[assignment]
    assert err.value.status_code == 400 and body["param"].startswith(param), body
