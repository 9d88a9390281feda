"""Render a chat with the Jinja template stored in the GGUF metadata (sandboxed)."""

from __future__ import annotations

from typing import Any

from jinja2 import meta
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: a chat as role/content messages
Messages = list[dict[str, str]]

# Used when a GGUF carries no template: plain ChatML.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class ChatTemplateError(ValueError):
    pass


def _raise(message: str) -> None:
    raise ChatTemplateError(message)


class ChatTemplate:
    def __init__(self, source: str | None, bos_token: str, eos_token: str) -> None:
        # transformers' apply_chat_template environment (lenient undefined: templates test optional
        # message fields such as tool_calls by reading them)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(source or CHATML_TEMPLATE)
        #: the template shows the model its tools (it reads a ``tools`` variable)
        self.supports_tools = "tools" in meta.find_undeclared_variables(env.parse(source or CHATML_TEMPLATE))
        self.name = "the GGUF's own template" if source else "plain ChatML (the GGUF has no template)"
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str:
        """``tools``: OpenAI tool definitions, for a template that ``supports_tools``."""
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self._bos,
                eos_token=self._eos,
                tools=tools,
            )
        except ChatTemplateError:
            raise
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template failed: {exc}") from exc
