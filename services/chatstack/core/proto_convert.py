"""Converters shared by several servicers (proto enums <-> domain strings)."""

from __future__ import annotations

from chatstack.v1 import common_pb2

ROLE_NAMES: dict[int, str] = {
    common_pb2.ROLE_SYSTEM: "system",
    common_pb2.ROLE_USER: "user",
    common_pb2.ROLE_ASSISTANT: "assistant",
}
ROLE_VALUES: dict[str, int] = {name: value for value, name in ROLE_NAMES.items()}


def role_name(role: int) -> str:
    """Proto Role -> "system" | "user" | "assistant" | "" (unspecified or unknown)."""
    return ROLE_NAMES.get(role, "")


def role_value(name: str) -> int:
    """"system" | "user" | "assistant" -> proto Role (ROLE_UNSPECIFIED otherwise)."""
    return ROLE_VALUES.get(name, common_pb2.ROLE_UNSPECIFIED)


def messages_from_proto(messages: "list[common_pb2.ChatMessage]") -> list[tuple[str, str]]:  # noqa: UP037
    """ChatMessage list -> (role, content) pairs; unknown roles become ""."""
    return [(role_name(m.role), m.content) for m in messages]
