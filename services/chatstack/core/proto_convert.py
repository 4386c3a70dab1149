"""Converters shared by several servicers (proto enums <-> domain strings)."""

from __future__ import annotations

from chatstack.core.roles import ASSISTANT, SYSTEM, USER
from chatstack.v1 import common_pb2

#: Proto Role -> the role's name (`chatstack.core.roles`), and back.
ROLE_NAMES: dict[int, str] = {
    common_pb2.ROLE_SYSTEM: SYSTEM,
    common_pb2.ROLE_USER: USER,
    common_pb2.ROLE_ASSISTANT: ASSISTANT,
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
