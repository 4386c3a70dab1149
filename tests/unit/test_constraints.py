"""The generation service's structured-output checks and schema rewrite (no engine)."""

from __future__ import annotations

import json
import re

import pytest

from chatstack.core.errors import InvalidRequest
from chatstack.core.structured_output import Constraint
from chatstack.generation.constraints import check_constraint, refusal, without_raw_control_characters


@pytest.mark.parametrize(("constraint", "says"), [
    (Constraint("json_schema", "{"), "not JSON"),
    (Constraint("json_schema", "[1]"), "is an object"),
    (Constraint("json_schema", json.dumps({"description": "x" * 100})), "exceed the limit of 64"),
    (Constraint("choice", ()), "give 1 to 256 values"),
    (Constraint("choice", ("a", "")), "a value is empty"),
    (Constraint("regex", " "), "empty"),
    (Constraint("regex", "a\x00"), "NUL"),
])
def test_a_malformed_constraint_is_refused_naming_its_field(constraint: Constraint, says: str) -> None:
    with pytest.raises(InvalidRequest, match=rf"^sampling\.constraint\.{constraint.kind}: .*{says}"):
        check_constraint(constraint, max_bytes=64)


def test_bounded_strings_get_a_pattern_without_control_characters_and_the_rest_is_untouched() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "string", "maxLength": 4},
        "b": {"type": "array", "items": {"type": "string", "minLength": 2}},
        "c": {"type": "string", "maxLength": 3, "pattern": "^x+$"},
        "d": {"type": "string"}, "e": {"enum": ["p", "q"]}}}
    fixed = json.loads(without_raw_control_characters(json.dumps(schema)))["properties"]
    assert fixed["a"] == {"type": "string", "pattern": '^[^\\u0000-\\u001f"\\\\]{0,4}$'}
    assert fixed["b"]["items"] == {"type": "string", "pattern": '^[^\\u0000-\\u001f"\\\\]{2,}$'}
    assert fixed["c"] == schema["properties"]["c"] and fixed["d"] == {"type": "string"}  # type: ignore[index]
    pattern = re.compile(fixed["a"]["pattern"].replace("\\u0000", "\x00").replace("\\u001f", "\x1f"))
    assert pattern.fullmatch("ab") and not pattern.fullmatch("a\x0c") and not pattern.fullmatch("abcde")


def test_a_refusal_keeps_the_reason_without_the_backends_source_location() -> None:
    assert refusal(ValueError("Failed: [15:27:44] /project/cpp/regex_converter.cc:83: The parenthesis is not "
                              "closed.")) == "Failed: The parenthesis is not closed."
