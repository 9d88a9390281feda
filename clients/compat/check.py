"""Real client libraries against a running edge, used unchanged: LangChain's ``ChatOpenAI``,
LlamaIndex's ``OpenAILike`` and instructor.

Run it with the libraries' own virtualenv (``make setup`` builds it from clients/compat/requirements.txt;
it cannot share .venv, whose openai is 3.x)::

    .venv-compat/bin/python clients/compat/check.py --base-url http://127.0.0.1:8000/v1 \
        --model SmolLM2-135M-Instruct [--only NAME ...]

It prints one JSON object, ``{check: {"ok": bool, "detail": str}}``, and exits 0 whatever the checks
gave (tests/e2e/test_client_libraries.py asserts). Each check is isolated: an exception is recorded as
that check's failure. A failed check's detail ends with the HTTP exchanges the library made (the request
bodies, and the bodies of the responses that are not streams), so that a failure can be told apart as the
edge's or the library's. It imports nothing from Tandem: it is the outside view.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

TIMEOUT_S = 300.0
MAX_TOKENS = 48
CLIP = 600
PERSON_PROMPT = "Describe a fictional person: give their name and age."
PERSON_JSON_PROMPT = ('Describe a fictional person as a JSON object with the keys "name" (a string) and "age" '
                      "(an integer).")


class Person(BaseModel):
    name: str
    age: int


class GetWeather(BaseModel):
    """The arguments of the get_weather tool."""

    city: str


def clip(text: str, limit: int = CLIP) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more chars]"


class Exchanges:
    """The HTTP exchanges of one check, through an httpx client handed to the library."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.client = httpx.Client(timeout=TIMEOUT_S,
                                   event_hooks={"request": [self._request], "response": [self._response]})

    def _request(self, request: httpx.Request) -> None:
        body = request.content.decode("utf-8", "replace")
        self.lines.append(f"request {request.method} {request.url.path}: {clip(body, 2000)}")

    def _response(self, response: httpx.Response) -> None:
        kind = response.headers.get("content-type", "?")
        if kind.startswith("text/event-stream"):  # a stream is left to the library to read as it comes
            self.lines.append(f"response {response.status_code} ({kind})")
        else:
            response.read()
            self.lines.append(f"response {response.status_code}: {clip(response.text, 2000)}")

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class Target:
    base_url: str  # ends in /v1
    model: str


Result = tuple[bool, str]
Check = Callable[[Target, httpx.Client], Result]


def _nonempty(text: object, what: str) -> Result:
    ok = isinstance(text, str) and text.strip() != ""
    return ok, f"{what}: {clip(repr(text))}"


def _person(value: object) -> Result:
    return isinstance(value, Person), f"{type(value).__name__}: {clip(repr(value))}"


# --- LangChain ----------------------------------------------------------------------------------

def _chat_openai(t: Target, http: httpx.Client, max_tokens: int = MAX_TOKENS) -> Any:
    from langchain_openai import ChatOpenAI  # type: ignore[import-not-found]

    return ChatOpenAI(model=t.model, base_url=t.base_url, api_key="unused", temperature=0, max_tokens=max_tokens,
                      max_retries=0, timeout=TIMEOUT_S, http_client=http)


def langchain_invoke(t: Target, http: httpx.Client) -> Result:
    msg = _chat_openai(t, http).invoke("Say hello")
    return _nonempty(msg.content, "AIMessage.content")


def langchain_stream(t: Target, http: httpx.Client) -> Result:
    chunks = list(_chat_openai(t, http).stream("Say hello"))
    texts = [c.content for c in chunks if isinstance(c.content, str) and c.content]
    joined = "".join(texts)
    ok = len(texts) > 1 and joined.strip() != ""
    return ok, f"{len(chunks)} chunks, {len(texts)} with text: {clip(repr(joined))}"


def langchain_structured_json_schema(t: Target, http: httpx.Client) -> Result:
    structured = _chat_openai(t, http).with_structured_output(Person)
    return _person(structured.invoke(PERSON_PROMPT))


def langchain_structured_json_mode(t: Target, http: httpx.Client) -> Result:
    structured = _chat_openai(t, http).with_structured_output(Person, method="json_mode")
    return _person(structured.invoke(PERSON_JSON_PROMPT))


def _forced_tool_call(t: Target, http: httpx.Client, max_tokens: int = MAX_TOKENS, **bind: Any) -> Result:
    from langchain_core.tools import StructuredTool  # type: ignore[import-not-found]

    def get_weather(city: str) -> str:
        return f"It is sunny in {city}."

    tool = StructuredTool.from_function(func=get_weather, name="get_weather", args_schema=GetWeather,
                                        description="Get the current weather in a city.")
    llm = _chat_openai(t, http, max_tokens).bind_tools([tool], tool_choice="get_weather", **bind)
    msg = llm.invoke("What is the weather like in Paris?")
    calls, invalid = list(msg.tool_calls), list(msg.invalid_tool_calls)
    detail = (f"tool_calls={clip(repr(calls))} invalid_tool_calls={clip(repr(invalid))} "
              f"content={clip(repr(msg.content))} finish_reason={msg.response_metadata.get('finish_reason')!r}")
    if len(calls) != 1 or invalid or calls[0]["name"] != "get_weather":
        return False, detail
    try:
        GetWeather.model_validate(calls[0]["args"])
    except ValidationError as exc:
        return False, f"{detail}; the arguments do not follow the tool's schema: {exc}"
    return True, detail


def langchain_bind_tools_named(t: Target, http: httpx.Client) -> Result:
    """LangChain's default: the tool's parameters schema leaves additional properties open, so a small
    model may add keys before it closes the object: a budget of 256 tokens."""
    return _forced_tool_call(t, http, max_tokens=256)


def langchain_bind_tools_named_strict(t: Target, http: httpx.Client) -> Result:
    """``strict=True``: ``"strict": true`` and ``additionalProperties: false`` in the tool's schema."""
    return _forced_tool_call(t, http, strict=True)


# --- LlamaIndex ---------------------------------------------------------------------------------

def _openai_like(t: Target, http: httpx.Client, chat: bool) -> Any:
    from llama_index.llms.openai_like import OpenAILike  # type: ignore[import-not-found]

    return OpenAILike(model=t.model, api_base=t.base_url, api_key="unused", is_chat_model=chat, temperature=0,
                      max_tokens=MAX_TOKENS, max_retries=0, timeout=TIMEOUT_S, context_window=2048,
                      http_client=http)


def _user(text: str) -> list[Any]:
    from llama_index.core.llms import ChatMessage  # type: ignore[import-not-found]

    return [ChatMessage(role="user", content=text)]


def llamaindex_chat(t: Target, http: httpx.Client) -> Result:
    resp = _openai_like(t, http, chat=True).chat(_user("Say hello"))
    return _nonempty(resp.message.content, "ChatResponse.message.content")


def llamaindex_stream(t: Target, http: httpx.Client) -> Result:
    deltas = [r.delta for r in _openai_like(t, http, chat=True).stream_chat(_user("Say hello"))]
    texts = [d for d in deltas if d]
    joined = "".join(texts)
    ok = len(texts) > 1 and joined.strip() != ""
    return ok, f"{len(deltas)} responses, {len(texts)} with a delta: {clip(repr(joined))}"


def llamaindex_complete(t: Target, http: httpx.Client) -> Result:
    resp = _openai_like(t, http, chat=False).complete("The three primary colours are")
    return _nonempty(resp.text, "CompletionResponse.text")


# --- instructor ---------------------------------------------------------------------------------

def _instructor(t: Target, http: httpx.Client, mode_name: str) -> Result:
    import instructor  # type: ignore[import-not-found]
    from openai import OpenAI

    # mypy reads .venv's openai 3.x, whose http_client is an httpx2 client; the 2.x this runs with takes httpx's
    openai = OpenAI(base_url=t.base_url, api_key="unused", max_retries=0, timeout=TIMEOUT_S,
                    http_client=http)  # type: ignore[arg-type]
    client = instructor.from_openai(openai, mode=getattr(instructor.Mode, mode_name))
    person = client.chat.completions.create(model=t.model, response_model=Person, max_retries=0, temperature=0,
                                            max_tokens=MAX_TOKENS,
                                            messages=[{"role": "user", "content": PERSON_JSON_PROMPT}])
    return _person(person)


def instructor_json(t: Target, http: httpx.Client) -> Result:
    return _instructor(t, http, "JSON")


def instructor_json_schema(t: Target, http: httpx.Client) -> Result:
    return _instructor(t, http, "JSON_SCHEMA")


CHECKS: dict[str, Check] = {f.__name__: f for f in (
    langchain_invoke, langchain_stream, langchain_structured_json_schema, langchain_structured_json_mode,
    langchain_bind_tools_named, langchain_bind_tools_named_strict,
    llamaindex_chat, llamaindex_stream, llamaindex_complete,
    instructor_json, instructor_json_schema,
)}


def run_check(check: Check, target: Target) -> dict[str, object]:
    exchanges = Exchanges()
    try:
        ok, detail = check(target, exchanges.client)
    except Exception as exc:  # a check's failure is its result
        last = traceback.extract_tb(exc.__traceback__)[-1]
        ok, detail = False, (f"{type(exc).__module__}.{type(exc).__qualname__}: {clip(str(exc), 2000)} "
                             f"(at {last.filename}:{last.lineno})")
    finally:
        exchanges.close()
    if not ok:
        detail += "\n" + "\n".join(exchanges.lines or ["(no HTTP request was made)"])
    return {"ok": ok, "detail": detail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="the edge's OpenAI base URL, ending in /v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--only", nargs="+", action="extend", choices=sorted(CHECKS), metavar="NAME",
                        help=f"run only these checks (of: {', '.join(CHECKS)})")
    args = parser.parse_args(argv)
    target = Target(args.base_url.rstrip("/"), args.model)
    results: dict[str, dict[str, object]] = {}
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON alone, whatever a library prints
        for name in dict.fromkeys(args.only or CHECKS):
            results[name] = run_check(CHECKS[name], target)
            print(f"{name}: {'ok' if results[name]['ok'] else 'FAILED'}", flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
