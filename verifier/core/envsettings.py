"""Settings from flags and the environment, for both servers' command lines.

Every setting is a ``--kebab-flag`` and a ``<PREFIX>_<NAME>`` environment variable (pydantic-settings).
Two things its defaults do not give:

- a list setting in the environment takes a plain value or comma-separated values (``KEY=sekret``,
  ``KEY=a,b``; a JSON list ``["a", "b"]`` still works), as vLLM's ``VLLM_API_KEY`` does, instead of
  JSON only (:data:`EnvList`);
- a value that does not parse ends the program with one line naming the flag or the variable it
  came from, and why, instead of a traceback (:func:`load_settings`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, TypeVar

from pydantic import BeforeValidator, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, CliApp, NoDecode, SettingsError

S = TypeVar("S", bound=BaseSettings)


def split_list(value: object) -> object:
    """A list setting's text as its items: values separated by commas, where a value may be a JSON list.

    ``a`` is one item, ``a,b`` two, ``["a", "b"]`` two; so are ``["a"],b``, which the command line
    passes on for ``--flag '["a"]' --flag b`` (it joins a list flag's values with commas). Empty
    values are dropped. Anything but text (a list given in Python) is left to the field's own validation.
    """
    if not isinstance(value, str):
        return value
    items: list[object] = []
    rest = value.strip()
    while rest:
        item, rest = next_item(rest)
        items.extend(item)
        rest = rest.lstrip().removeprefix(",").lstrip()
    return items


def next_item(text: str) -> tuple[list[object], str]:
    """The items at the start of ``text`` (a JSON list, or the text up to the next comma) and the rest."""
    if text.startswith("["):
        try:
            decoded, end = json.JSONDecoder().raw_decode(text)
        except json.JSONDecodeError as exc:  # a ValueError: pydantic reports it as the field's error
            raise ValueError(f"not a JSON list ({exc}); give a JSON list or comma-separated values") from exc
        return decoded, text[end:]
    item, comma, rest = text.partition(",")
    return ([item.strip()] if item.strip() else []), comma + rest


#: a list of strings that the environment (and the command line) give as "a", "a,b" or '["a", "b"]'
EnvList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]


def load_settings(settings_cls: type[S], prog: str, argv: list[str] | None = None) -> S:
    """The settings from the command line (``argv``; default: ``sys.argv[1:]``) over the environment.

    A value that does not parse exits the program with one line on stderr:
    ``prog: SOURCE: reason``, SOURCE the flag or the environment variable the value came from.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        return CliApp.run(settings_cls, cli_args=args)
    except ValidationError as exc:
        sys.exit(f"{prog}: {describe(exc, settings_cls, args)}")
    except SettingsError as exc:  # pydantic-settings' own parsing (e.g. a JSON value it decodes itself)
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        sys.exit(f"{prog}: {exc}{cause}")


def describe(exc: ValidationError, settings_cls: type[BaseSettings], args: list[str]) -> str:
    """The errors of ``exc`` on one line, each with the flag or variable its value came from."""
    return "; ".join(describe_error(error, settings_cls, args) for error in exc.errors())


def describe_error(error: ErrorDetails, settings_cls: type[BaseSettings], args: list[str]) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    if field not in settings_cls.model_fields:
        return error["msg"]
    return f"{source_of(field, settings_cls, args)}: {error['msg']}"


def source_of(field: str, settings_cls: type[BaseSettings], args: list[str]) -> str:
    """The flag or the environment variable a field's value came from (the flag wins, as in CliApp); both if unsure."""
    flag = flag_name(field, settings_cls)
    variable = env_name(field, settings_cls)
    if any(arg == flag or arg.startswith(f"{flag}=") for arg in args):
        return flag
    if variable.lower() in (name.lower() for name in os.environ):
        return variable
    return f"{flag} / {variable}"


def flag_name(field: str, settings_cls: type[BaseSettings]) -> str:
    kebab = settings_cls.model_config.get("cli_kebab_case", False)
    return "--" + (field.replace("_", "-") if kebab else field)


def env_name(field: str, settings_cls: type[BaseSettings]) -> str:
    return f"{settings_cls.model_config.get('env_prefix', '')}{field}".upper()
