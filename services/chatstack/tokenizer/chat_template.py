"""Render a HF chat template (Jinja) the way `transformers` does, in a sandbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from chatstack.core.errors import InvalidRequest


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


class ChatTemplate:
    """A compiled chat template plus the special tokens it may reference."""

    def __init__(self, source: str, special_tokens: dict[str, str]) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        self._template = env.from_string(source)
        self._special = special_tokens

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool) -> str:
        """Render messages (dicts with role and content) to prompt text."""
        try:
            return self._template.render(
                messages=list(messages), add_generation_prompt=add_generation_prompt,
                **self._special,
            )
        except TemplateError as exc:
            raise InvalidRequest(f"chat template rejected the messages: {exc}") from exc
