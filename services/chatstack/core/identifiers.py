"""The identifier grammar every service enforces: one definition, checked with `fullmatch`.

Session ids (and turn ids) become parts of Redis keys and travel in metadata and logs, so they are
restricted to ASCII letters, digits and `_ . : -`, 1-128 characters. `re.match` with `$` would
accept a trailing newline (`$` matches before it); `fullmatch` does not.
"""

from __future__ import annotations

import re

from chatstack.core.errors import InvalidRequest

ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
ID_RULE = "1-128 characters of ASCII letters, digits, '_', '.', ':' or '-'"


def check_id(value: str, field: str) -> str:
    """`value` if it follows the grammar; INVALID_ARGUMENT naming `field` otherwise."""
    if ID_PATTERN.fullmatch(value) is None:
        shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
        raise InvalidRequest(f"{field}: {shown} is not an id ({ID_RULE})")
    return value
