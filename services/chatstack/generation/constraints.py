"""Structured output: a request's `Constraint` checked and mapped to vLLM's
`StructuredOutputsParams`.

Checked in two steps before admission, each naming the field (`sampling.constraint.<kind>`):
its shape and size here, at once (a schema is JSON text of an object, choices are non-empty, at
most `max_constraint_bytes` in all); then vLLM's own check, which parses it into the backend's
grammar (the configured backend), in a thread of its own with a deadline (`VllmGenerationEngine`), so a
pathological schema can neither stall the event loop nor reach the engine. The engine then
compiles the grammar for its tokenizer in its own background threads, never in a step.
"""

from __future__ import annotations

import json
import re
from typing import Any

from chatstack.core.errors import InvalidRequest
from chatstack.core.structured_output import Constraint

MAX_CHOICES = 256


def field_of(c: Constraint) -> str:
    """The request field a constraint came from (for messages)."""
    return f"sampling.constraint.{c.kind}"
# The backend's source location in its messages ("[15:27:44] /project/cpp/regex_converter.cc:83: "):
# not the caller's business.
_SOURCE_LOCATION = re.compile(r"\[[\d:]+\] \S+?:\d+: ")


def refusal(exc: BaseException) -> str:
    """What the backend said of a constraint it refused, without its source locations."""
    return _SOURCE_LOCATION.sub("", str(exc)).strip()


# What xgrammar allows in a length-bounded string, minus the control characters JSON forbids raw.
_BOUNDED_STRING = '^[^\\u0000-\\u001f"\\\\]{%d,%s}$'


def without_raw_control_characters(schema_text: str) -> str:
    """The schema, with each length-bounded string spelled as the pattern xgrammar would use for
    it (the lengths in the pattern: vLLM refuses a pattern beside them), but without control
    characters. The installed xgrammar turns `minLength`/`maxLength` into
    `[^"\\\r\n]{m,n}`, which lets a raw control character into the string: no JSON parser accepts
    the answer (7 of 120 schemas in tests/fuzz/test_json_schemas.py, from the tiny model)."""
    schema = json.loads(schema_text)

    def fix(node: Any) -> Any:
        if isinstance(node, list):
            return [fix(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: fix(value) for key, value in node.items()}
        bounded = "minLength" in node or "maxLength" in node
        free = not {"pattern", "format", "enum", "const"} & set(node)
        if node.get("type") == "string" and bounded and free:  # the pattern holds the lengths
            low, high = node.pop("minLength", 0), node.pop("maxLength", "")
            node["pattern"] = _BOUNDED_STRING % (int(low), high)
        return node

    return json.dumps(fix(schema))


def check_constraint(c: Constraint, max_bytes: int) -> None:
    """The constraint's shape and size (see module docstring)."""
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    size = sum(len(v.encode()) for v in values)
    if size > max_bytes:
        raise InvalidRequest(f"{field_of(c)}: {size} bytes exceed the limit of {max_bytes}")
    if c.kind == "choice":
        if not values or len(values) > MAX_CHOICES:
            raise InvalidRequest(f"{field_of(c)}: give 1 to {MAX_CHOICES} values, got {len(values)}")
        if not all(values):
            raise InvalidRequest(f"{field_of(c)}: a value is empty")
    elif c.kind == "json_schema":
        try:
            schema = json.loads(str(c.value))
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{field_of(c)}: not JSON ({exc})") from None
        if not isinstance(schema, dict):
            raise InvalidRequest(f"{field_of(c)}: a JSON Schema is an object, got {type(schema).__name__}")
    elif c.kind in ("regex", "grammar") and not str(c.value).strip():
        raise InvalidRequest(f"{field_of(c)}: empty")
    if "\x00" in "".join(values):
        raise InvalidRequest(f"{field_of(c)}: contains a NUL character")


def structured_outputs(c: Constraint, backend: str = "xgrammar") -> Any:
    """vLLM's StructuredOutputsParams for a checked constraint on `backend`."""
    from vllm.sampling_params import StructuredOutputsParams

    if c.kind == "json_schema":
        schema = str(c.value)
        if backend == "xgrammar":
            schema = without_raw_control_characters(schema)
        return StructuredOutputsParams(json=schema)
    if c.kind == "regex":
        return StructuredOutputsParams(regex=str(c.value))
    if c.kind == "grammar":
        return StructuredOutputsParams(grammar=str(c.value))
    if c.kind == "choice":
        return StructuredOutputsParams(choice=list(c.value))
    return StructuredOutputsParams(json_object=True)
