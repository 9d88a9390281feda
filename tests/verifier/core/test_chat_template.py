from __future__ import annotations

import pytest

from verifier.core.chat_template import ChatTemplate, ChatTemplateError

SMOL = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nDefault<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_renders_gguf_style_template() -> None:
    t = ChatTemplate(SMOL, "<s>", "</s>")
    out = t.render([{"role": "user", "content": "Hi"}])
    assert out == "<|im_start|>system\nDefault<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_fallback_chatml() -> None:
    out = ChatTemplate(None, "", "").render([{"role": "user", "content": "x"}], add_generation_prompt=False)
    assert out == "<|im_start|>user\nx<|im_end|>\n"


def test_template_errors_become_chat_template_error() -> None:
    t = ChatTemplate("{{ raise_exception('roles must alternate') }}", "", "")
    with pytest.raises(ChatTemplateError, match="alternate"):
        t.render([{"role": "user", "content": "x"}])


def test_sandbox_blocks_attribute_escape() -> None:
    t = ChatTemplate("{{ messages.__class__.__mro__ }}", "", "")
    with pytest.raises(ChatTemplateError):
        t.render([])


def test_message_content_is_text_never_template_code() -> None:
    """A template-injection attempt in a message renders literally; nothing in it runs."""
    attack = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for x in range(10**9) %}x{% endfor %}"
    out = ChatTemplate(SMOL, "", "").render([{"role": "user", "content": attack}])
    assert attack in out and "<class" not in out
