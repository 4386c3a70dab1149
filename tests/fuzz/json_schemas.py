"""JSON schemas of varied features, built deterministically (the JSONSchemaBench style): nested
objects, arrays, enums, const, anyOf, $ref to $defs, patterns, bounded integers and numbers,
required and optional properties. Every value is bounded (string lengths, item counts), so a
constrained answer fits its max_tokens even from a random model."""

from __future__ import annotations

import random
from typing import Any

Schema = dict[str, Any]
WORDS = ("alpha", "beta", "gamma", "delta", "red", "green", "blue", "yes", "no", "日本")


def _leaf(rng: random.Random) -> Schema:
    kind = rng.choice(("integer", "integer", "number", "boolean", "null", "enum", "const", "pattern", "string"))
    if kind == "integer":
        low = rng.randint(-50, 50)
        return {"type": "integer", "minimum": low, "maximum": low + rng.randint(0, 100)}
    if kind == "number":
        return {"type": "number", "minimum": -1, "maximum": 1}
    if kind in ("boolean", "null"):
        return {"type": kind}
    if kind == "enum":
        return {"enum": rng.sample(WORDS, rng.randint(1, 4))}
    if kind == "const":
        return {"const": rng.choice(WORDS)}
    if kind == "pattern":
        return {"type": "string", "pattern": rng.choice(("^[a-z]{1,4}$", "^[0-9]{3}-[0-9]{2}$", "^(on|off)$"))}
    return {"type": "string", "minLength": 1, "maxLength": rng.randint(1, 6)}


def _node(rng: random.Random, depth: int) -> Schema:
    roll = rng.random()
    if depth >= 3 or roll < 0.35:
        return _leaf(rng)
    if roll < 0.6:
        return _object(rng, depth + 1)
    if roll < 0.8:
        return {"type": "array", "items": _node(rng, depth + 1), "minItems": rng.randint(0, 1),
                "maxItems": rng.randint(1, 3)}
    return {"anyOf": [_node(rng, depth + 1), _leaf(rng)]}


def _object(rng: random.Random, depth: int) -> Schema:
    names = rng.sample(("id", "name", "kind", "size", "tags", "point", "ok", "note"), rng.randint(1, 4))
    properties = {name: _node(rng, depth) for name in names}
    required = [n for n in names if rng.random() < 0.7] or names[:1]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def schemas(count: int, seed: int = 2026) -> list[Schema]:
    """`count` schemas, the same ones for the same seed; one in five uses $defs and $ref."""
    rng = random.Random(seed)
    out: list[Schema] = []
    for i in range(count):
        root = _object(rng, 0) if rng.random() < 0.7 else _node(rng, 1)
        if i % 5 == 4:
            root = {"$defs": {"item": _object(rng, 2)}, "type": "object",
                    "properties": {"first": {"$ref": "#/$defs/item"},
                                   "more": {"type": "array", "items": {"$ref": "#/$defs/item"}, "maxItems": 2}},
                    "required": ["first"], "additionalProperties": False}
        out.append(root)
    return out
