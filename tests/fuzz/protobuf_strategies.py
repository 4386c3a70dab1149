"""Hypothesis strategies that build a valid-or-invalid instance of any protobuf message type.

The builder walks the message's descriptor: scalars take edge values (type extremes, NaN, ±inf,
empty/huge/NUL/RTL/emoji text, glob characters, unknown enum numbers), repeated fields and maps
are usually small and occasionally huge, one field of each oneof is set at most, and nested
messages stop at a depth limit. Domain knowledge enters only through `overrides`: a strategy per
field full name (`chatstack.v1.SamplingParams.max_tokens`) used instead of the generic one.

Sizes are bounded per message (`_Ctx`): at most two huge strings or huge repeated fields, and
the elements of a huge repeated field are small, so a draw never builds more than a few tens of MB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, OneofDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

F = FieldDescriptor
Draw = Any  # hypothesis' draw callable
Overrides = Mapping[str, st.SearchStrategy[Any]]

_I32, _I64 = (-(2**31), 2**31 - 1), (-(2**63), 2**63 - 1)
_U32, _U64 = (0, 2**32 - 1), (0, 2**64 - 1)
INT_RANGES: dict[int, tuple[int, int]] = {
    F.TYPE_INT32: _I32, F.TYPE_SINT32: _I32, F.TYPE_SFIXED32: _I32,
    F.TYPE_INT64: _I64, F.TYPE_SINT64: _I64, F.TYPE_SFIXED64: _I64,
    F.TYPE_UINT32: _U32, F.TYPE_FIXED32: _U32,
    F.TYPE_UINT64: _U64, F.TYPE_FIXED64: _U64,
}
INT_EDGES = (0, 1, -1, 2, 3, 7, 8, 9, 64, 65, 255, 256, 1023, 1024, 1025, 2048, 4097, 10_000, 65_536,
             2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 - 1, 2**32, 2**53 + 1,
             2**63 - 1, 2**63, -(2**63), 2**64 - 1)
FLOAT_EDGES = (0.0, -0.0, math.nan, math.inf, -math.inf, 1.0, -1.0, 0.5, 2.0, 2.5, -2.5, 1e-45, 5e-324,
               1e-300, 3.4028235e38, 1e39, 1.7976931348623157e308, -1e308)
# Glob and key-separator characters, newlines, NUL, bidi controls, emoji, unicode digits
# (`"²".isdigit()` but `int("²")` fails), template and special-token look-alikes.
SPECIAL_TEXT = ("", " ", "\n", "abc\n", "\r\n", "\t", "\x00", "a\x00b", "\u202e", "\u200f", "\u202egnp.exe",
                "\ufeff", "\uffff", "\U0010ffff", "😀", "👩‍👩‍👧‍👦", "é", "\U0001d54f", "ÿ", "*", "?", "[", "]",
                "{", "}", ":", "*?[]{}:", "a*", "[a-z]*", "{a,b}", "a:b", "\\", "²", "\u0661\u0662\u0663", "①", "-1",
                "0", "007", "99999999999999999999", "1e3", " 1", "NaN", "%s%n", "../..", "null",
                "<|end|>", "<|user|>", "<|system|>", "<s>", "</s>", "{{ 7*7 }}", "{% raw %}")
WORDS = ("ka", "to", "ri", "sa", "mo", "lu", "pe", "di", " ")
HUGE_BYTES = (1025, 4097, 32_001, 65_537, 300_000, 1_100_000, 4_300_000)
HUGE_UNITS = ("a", "ka to ", "😀", "\x00", "\u202e", "*")
BIG_SIZES = (9, 65, 257, 1025, 10_000)
BIG_ABOVE = 64  # repeated fields longer than this take small elements only


def repeat_to_bytes(unit: str, size: int) -> str:
    """`unit` repeated until its UTF-8 encoding is about `size` bytes."""
    return unit * max(1, size // len(unit.encode()))


def edge_ints(field_type: int) -> st.SearchStrategy[int]:
    """Integers of a protobuf integer type: small ones, the type's edges, or anything in range."""
    lo, hi = INT_RANGES[field_type]
    edges = sorted({v for v in (*INT_EDGES, lo, hi) if lo <= v <= hi})
    return st.one_of(st.integers(max(lo, -2), min(hi, 16)), st.sampled_from(edges), st.integers(lo, hi))


def edge_floats(field_type: int) -> st.SearchStrategy[float]:
    """Floats: ordinary ones, the edges (NaN, ±inf, ±0, subnormal, huge) or anything."""
    if field_type == F.TYPE_FLOAT:
        return st.one_of(st.floats(-3, 3, width=32), st.sampled_from(FLOAT_EDGES), st.floats(width=32))
    return st.one_of(st.floats(-3, 3), st.sampled_from(FLOAT_EDGES), st.floats())


def small_texts() -> st.SearchStrategy[str]:
    """Short strings: the special ones, random unicode (never lone surrogates) or word salads."""
    pieces = st.sampled_from(SPECIAL_TEXT + WORDS)
    return st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(max_size=12),
                     st.lists(pieces, min_size=1, max_size=6).map("".join))


def huge_texts() -> st.SearchStrategy[str]:
    """One unit repeated to between 1 KB and 4.3 MB (past gRPC's default 4 MB message limit)."""
    return st.builds(repeat_to_bytes, st.sampled_from(HUGE_UNITS), st.sampled_from(HUGE_BYTES))


def enum_values(enum: EnumDescriptor) -> st.SearchStrategy[int]:
    """Declared enum numbers, or unknown ones (proto3 enums are open)."""
    known = sorted(v.number for v in enum.values)
    unknown = (-1, max(known) + 1, 99, 2**31 - 1, -(2**31))
    return st.one_of(st.sampled_from(known), st.sampled_from(unknown), st.integers(-(2**31), 2**31 - 1))


def one_in(draw: Draw, n: int) -> bool:
    """A rare event: true about once in `n` draws."""
    return bool(draw(st.integers(0, n - 1)) == n - 1)


def is_map(field: FieldDescriptor) -> bool:
    """Whether `field` is a map<k, v>."""
    return field.type == F.TYPE_MESSAGE and bool(field.message_type.GetOptions().map_entry)


def is_synthetic(oneof: OneofDescriptor) -> bool:
    """Whether a oneof only carries the presence of one proto3 `optional` field."""
    return len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}"


def message_class(descriptor: Descriptor) -> type[Message]:
    """The generated class of a message descriptor."""
    return message_factory.GetMessageClass(descriptor)


@dataclass
class _Ctx:
    """One draw's state: huge values (strings or repeated fields) still allowed, and whether
    values are plain (benign, likely valid) or edge values."""

    huge_left: int = 2
    plain: bool = False

    def take(self) -> bool:
        """Use one huge value if any is left (never in plain mode)."""
        if self.plain or self.huge_left <= 0:
            return False
        self.huge_left -= 1
        return True

    def small(self) -> _Ctx:
        """The context of the elements of a huge repeated field: nothing huge inside."""
        return _Ctx(0, self.plain)


def plain_values(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Benign values of a scalar field: short words, small numbers, declared non-zero enums."""
    kind = field.type
    if kind == F.TYPE_STRING:
        return st.lists(st.sampled_from(WORDS[:-1]), min_size=1, max_size=4).map(" ".join)
    if kind == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.sampled_from([n for n in known if n] or known)
    if kind == F.TYPE_BYTES:
        return st.just(b"ab")
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return st.sampled_from([0.0, 0.5, 1.0])
    lo, hi = INT_RANGES[kind]
    return st.integers(max(lo, 0), min(hi, 8))


class MessageBuilder:
    """Builds messages from descriptors; `overrides` replace the strategy of some fields.

    A third of the messages take edge values everywhere, a third are plain (mostly valid, so the
    fuzz reaches past validation), a third are plain but for one top-level field with edge values."""

    def __init__(self, overrides: Overrides | None = None, essential: frozenset[str] = frozenset(),
                 max_depth: int = 3) -> None:
        """`essential`: names of fields a plain message always sets (e.g. session_id)."""
        self.overrides = dict(overrides or {})
        self.essential = essential
        self.max_depth = max_depth

    def messages(self, descriptor: Descriptor) -> st.SearchStrategy[Message]:
        """A strategy for instances of `descriptor`."""
        return st.composite(lambda draw: self._draw(draw, descriptor))()

    def _draw(self, draw: Draw, descriptor: Descriptor) -> Message:
        mode = draw(st.sampled_from(["plain", "plain but one", "edge"]))  # plain first: it shrinks there
        message = self.build(draw, descriptor, _Ctx(plain=mode != "edge"), 0)
        if mode == "plain but one" and descriptor.fields:
            field = draw(st.sampled_from(list(descriptor.fields)))
            message.ClearField(field.name)
            self._set(draw, message, field, _Ctx(), 0)
        return message

    def build(self, draw: Draw, descriptor: Descriptor, ctx: _Ctx, depth: int) -> Message:
        """One message: each oneof gets at most one field, every other field is set or not."""
        message = message_class(descriptor)()
        chosen: set[str] = set()
        for oneof in descriptor.oneofs:
            real = not is_synthetic(oneof)
            pick = draw(st.sampled_from(list(oneof.fields) if ctx.plain and real else [None, *oneof.fields]))
            if pick is not None:
                chosen.add(pick.name)
        for field in descriptor.fields:
            if field.containing_oneof is not None:
                present = field.name in chosen
            elif ctx.plain:
                present = field.name in self.essential or draw(st.integers(0, 3)) < 3
            else:
                present = draw(st.booleans())
            if present:
                self._set(draw, message, field, ctx, depth)
        return message

    def _set(self, draw: Draw, message: Message, field: FieldDescriptor, ctx: _Ctx, depth: int) -> None:
        if is_map(field):
            self._set_map(draw, message, field, ctx, depth)
        elif field.is_repeated:
            getattr(message, field.name).extend(self._elements(draw, field, ctx, depth))
        elif field.type == F.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(self.value(draw, field, ctx, depth))
        else:
            setattr(message, field.name, self.value(draw, field, ctx, depth))

    def _size(self, draw: Draw, ctx: _Ctx) -> int:
        if ctx.plain:
            return int(draw(st.integers(1, 2)))
        if one_in(draw, 12) and ctx.take():
            return int(draw(st.sampled_from(BIG_SIZES)))
        return int(draw(st.integers(0, 3)))

    def _elements(self, draw: Draw, field: FieldDescriptor, ctx: _Ctx, depth: int) -> list[Any]:
        size = self._size(draw, ctx)
        if size > BIG_ABOVE:  # one small element, repeated
            return [self.value(draw, field, ctx.small(), depth)] * size
        return [self.value(draw, field, ctx, depth) for _ in range(size)]

    def _set_map(self, draw: Draw, message: Message, field: FieldDescriptor, ctx: _Ctx, depth: int) -> None:
        key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        size = self._size(draw, ctx)
        if size > BIG_ABOVE:  # distinct made-up keys, one small value
            value = self.value(draw, value_field, ctx.small(), depth)
            entries = [(f"k{i}" if key_field.type == F.TYPE_STRING else i, value) for i in range(size)]
        else:
            entries = [(self.value(draw, key_field, ctx, depth), self.value(draw, value_field, ctx, depth))
                       for _ in range(size)]
        container = getattr(message, field.name)
        for key, value in entries:
            if value_field.type == F.TYPE_MESSAGE:
                container[key].CopyFrom(value)
            else:
                container[key] = value

    def value(self, draw: Draw, field: FieldDescriptor, ctx: _Ctx, depth: int) -> Any:
        """One value of `field`'s type (an element, for repeated fields)."""
        override = self.overrides.get(field.full_name)
        if override is not None:
            return draw(override)
        kind = field.type
        if kind == F.TYPE_MESSAGE:
            if depth >= self.max_depth:
                return message_class(field.message_type)()
            return self.build(draw, field.message_type, ctx, depth + 1)
        if ctx.plain:
            return draw(plain_values(field))
        if kind == F.TYPE_ENUM:
            return draw(enum_values(field.enum_type))
        if kind == F.TYPE_STRING:
            return draw(huge_texts()) if one_in(draw, 16) and ctx.take() else draw(small_texts())
        if kind == F.TYPE_BYTES:
            return draw(st.binary(max_size=32))
        if kind == F.TYPE_BOOL:
            return draw(st.booleans())
        if kind in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
            return draw(edge_floats(kind))
        return draw(edge_ints(kind))
