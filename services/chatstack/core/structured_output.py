"""Structured output, as every service sees it: a constraint the generated answer must match
(`OutputConstraint` on the wire; `chatstack.core.proto_convert` converts it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ConstraintKind = Literal["json_schema", "regex", "grammar", "choice", "json_object"]


@dataclass(frozen=True)
class Constraint:
    """What the answer must match: the schema (JSON text), regex or grammar; the choices for
    `choice`; "" for `json_object`."""

    kind: ConstraintKind
    value: str | tuple[str, ...] = ""
