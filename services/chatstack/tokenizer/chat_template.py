"""Render a HF chat template (Jinja) the way `transformers` does, in a sandbox."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from chatstack.core.errors import InvalidRequest


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """`tojson` as transformers defines it for chat templates (Jinja's own escapes HTML)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class ChatTemplate:
    """A compiled chat template plus the special tokens it may reference."""

    def __init__(self, source: str, special_tokens: dict[str, str]) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        env.filters["tojson"] = _tojson
        self._template = env.from_string(source)
        self._special = special_tokens

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool,
               tools: Sequence[dict[str, Any]] = ()) -> str:
        """Render messages (HF's dicts: role, content, tool_calls, tool_call_id) and the tools
        the model may call to prompt text."""
        try:
            return self._template.render(
                messages=list(messages), add_generation_prompt=add_generation_prompt,
                tools=list(tools) or None, **self._special,
            )
        except TemplateError as exc:
            raise InvalidRequest(f"chat template rejected the messages: {exc}") from exc
