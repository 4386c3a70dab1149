"""Raw request bytes that no generated stub would send: malformed protobuf wire data.

Each strategy yields `(kind, payload)`. Kinds: random bytes, a valid serialization cut short,
a string field (possibly nested) carrying invalid UTF-8, a field with the wrong wire type, a
length prefix far past the end, an over-long varint, field number 0, groups nested past the
parser's depth limit, and a valid message with unknown fields appended (which must parse).
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from tests.fuzz.protobuf_strategies import Draw

F = FieldDescriptor
VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28", b"\xed\xa0\x80",
                b"\xc0\xaf", b"abc\xfe", b"\xf8\x88\x80\x80\x80", b"ok\xed\xbf\xbfok")
UNKNOWN_FIELD = 1000  # no chatstack message has this many fields
RawPayload = tuple[str, bytes]


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (negative ints as 64-bit two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    """A field key."""
    return varint(number << 3 | wire_type)


def length_delimited(number: int, body: bytes) -> bytes:
    """Field `number` as a length-delimited record."""
    return tag(number, LENGTH) + varint(len(body)) + body


def string_paths(descriptor: Descriptor, depth: int = 0) -> list[list[FieldDescriptor]]:
    """Field paths from `descriptor` down to every string field (map keys/values included)."""
    paths: list[list[FieldDescriptor]] = []
    for field in descriptor.fields:
        if field.type == F.TYPE_STRING:
            paths.append([field])
        elif field.type == F.TYPE_MESSAGE and depth < 3:
            paths += [[field, *rest] for rest in string_paths(field.message_type, depth + 1)]
    return paths


def nested_string(path: list[FieldDescriptor], raw: bytes) -> bytes:
    """Bytes setting the string at the end of `path` to `raw`, wrapping it in its parents."""
    body = length_delimited(path[-1].number, raw)
    for field in reversed(path[:-1]):
        body = length_delimited(field.number, body)
    return body


def wrong_wire_type(field: FieldDescriptor, garbage: bytes) -> bytes:
    """`field` encoded with a wire type its type never uses (or the reserved types 6 and 7)."""
    if field.type in (F.TYPE_STRING, F.TYPE_BYTES, F.TYPE_MESSAGE):
        return tag(field.number, VARINT) + varint(5)
    if field.type in (F.TYPE_FIXED64, F.TYPE_SFIXED64, F.TYPE_DOUBLE):
        return tag(field.number, FIXED32) + b"\x01\x02\x03\x04"
    return tag(field.number, 6 + len(garbage) % 2) + garbage


class RawPayloads:
    """Strategies of malformed request bytes for one request type."""

    def __init__(self, descriptor: Descriptor, messages: st.SearchStrategy[Message]) -> None:
        self.descriptor = descriptor
        self.messages = messages
        self.paths = string_paths(descriptor)

    def payloads(self) -> st.SearchStrategy[RawPayload]:
        """Any of the malformed kinds."""
        makers: list[Callable[[Draw], RawPayload]] = [
            self._random, self._truncated, self._wrong_wire_type, self._huge_length, self._long_varint,
            self._field_zero, self._deep_groups, self._unknown_fields]
        if self.paths:
            makers.append(self._invalid_utf8)
        return st.composite(lambda draw: draw(st.sampled_from(makers))(draw))()

    def _valid(self, draw: Draw) -> bytes:
        return bytes(draw(self.messages).SerializeToString())

    def _random(self, draw: Draw) -> RawPayload:
        return "random bytes", draw(st.binary(max_size=64))

    def _truncated(self, draw: Draw) -> RawPayload:
        valid = self._valid(draw)
        if len(valid) < 2:
            return "truncated", tag(1, LENGTH) + varint(3) + b"a"
        return "truncated", valid[:draw(st.integers(1, len(valid) - 1))]

    def _invalid_utf8(self, draw: Draw) -> RawPayload:
        path = draw(st.sampled_from(self.paths))
        bad = draw(st.sampled_from(INVALID_UTF8))
        prefix = self._valid(draw) if draw(st.booleans()) else b""
        return f"invalid utf-8 in {'.'.join(f.name for f in path)}", prefix + nested_string(path, bad)

    def _wrong_wire_type(self, draw: Draw) -> RawPayload:
        if not self.descriptor.fields:
            return "wrong wire type", tag(1, 7) + b"\x00"
        field = draw(st.sampled_from(list(self.descriptor.fields)))
        return f"wrong wire type for {field.name}", wrong_wire_type(field, draw(st.binary(min_size=1, max_size=8)))

    def _huge_length(self, draw: Draw) -> RawPayload:
        number = draw(st.sampled_from([f.number for f in self.descriptor.fields] or [1]))
        length = draw(st.sampled_from([2**31 - 1, 2**31, 2**32 + 1, 2**63]))
        return "length past the end", tag(number, LENGTH) + varint(length) + b"ab"

    def _long_varint(self, draw: Draw) -> RawPayload:
        number = draw(st.sampled_from([f.number for f in self.descriptor.fields] or [1]))
        return "11-byte varint", tag(number, VARINT) + b"\xff" * 10 + b"\x01"

    def _field_zero(self, draw: Draw) -> RawPayload:
        return "field number 0", tag(0, draw(st.sampled_from([VARINT, LENGTH]))) + b"\x01\x01"

    def _deep_groups(self, draw: Draw) -> RawPayload:
        depth = draw(st.sampled_from([50, 101, 1000]))
        closed = draw(st.booleans())
        body = tag(UNKNOWN_FIELD, START_GROUP) * depth + (tag(UNKNOWN_FIELD, END_GROUP) * depth if closed else b"")
        return f"{depth} nested groups{'' if closed else ' unclosed'}", body

    def _unknown_fields(self, draw: Draw) -> RawPayload:
        extra = length_delimited(UNKNOWN_FIELD, draw(st.binary(max_size=16))) + tag(UNKNOWN_FIELD + 1, VARINT) + varint(7)
        return "valid + unknown fields", self._valid(draw) + extra
