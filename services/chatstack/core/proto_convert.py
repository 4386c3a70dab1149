"""Converters shared by several servicers (proto enums <-> domain strings)."""

from __future__ import annotations

from collections.abc import Iterable

from chatstack.core.chat_message import ChatMessage, FunctionTool, ToolCall
from chatstack.core.errors import InvalidRequest
from chatstack.core.roles import ASSISTANT, SYSTEM, TOOL, USER
from chatstack.core.structured_output import Constraint
from chatstack.v1 import common_pb2

#: Proto Role -> the role's name (`chatstack.core.roles`), and back.
ROLE_NAMES: dict[int, str] = {
    common_pb2.ROLE_SYSTEM: SYSTEM,
    common_pb2.ROLE_USER: USER,
    common_pb2.ROLE_ASSISTANT: ASSISTANT,
    common_pb2.ROLE_TOOL: TOOL,
}
ROLE_VALUES: dict[str, int] = {name: value for value, name in ROLE_NAMES.items()}


def role_name(role: int) -> str:
    """Proto Role -> "system" | "user" | "assistant" | "tool" | "" (unspecified or unknown)."""
    return ROLE_NAMES.get(role, "")


def role_value(name: str) -> int:
    """"system" | "user" | "assistant" | "tool" -> proto Role (ROLE_UNSPECIFIED otherwise)."""
    return ROLE_VALUES.get(name, common_pb2.ROLE_UNSPECIFIED)


def tool_calls_from_proto(calls: "Iterable[common_pb2.ToolCall]") -> tuple[ToolCall, ...]:  # noqa: UP037
    """ToolCall messages -> records."""
    return tuple(ToolCall(c.id, c.name, c.arguments) for c in calls)


def tool_calls_to_proto(calls: Iterable[ToolCall]) -> list[common_pb2.ToolCall]:
    """Tool call records -> messages."""
    return [common_pb2.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls]


def chat_messages_from_proto(messages: "Iterable[common_pb2.ChatMessage]") -> list[ChatMessage]:  # noqa: UP037
    """ChatMessage messages -> records, tool calls included; unknown roles become ""."""
    return [ChatMessage(role_name(m.role), m.content, tool_calls_from_proto(m.tool_calls), m.tool_call_id)
            for m in messages]


def chat_messages_to_proto(messages: Iterable[ChatMessage]) -> list[common_pb2.ChatMessage]:
    """ChatMessage records -> messages."""
    return [common_pb2.ChatMessage(role=role_value(m.role), content=m.content,  # type: ignore[arg-type]
                                   tool_calls=tool_calls_to_proto(m.tool_calls), tool_call_id=m.tool_call_id)
            for m in messages]


def tools_from_proto(tools: "Iterable[common_pb2.FunctionTool]") -> tuple[FunctionTool, ...]:  # noqa: UP037
    """FunctionTool messages -> records."""
    return tuple(FunctionTool(t.name, t.description, t.parameters_json) for t in tools)


def tools_to_proto(tools: Iterable[FunctionTool]) -> list[common_pb2.FunctionTool]:
    """FunctionTool records -> messages."""
    return [common_pb2.FunctionTool(name=t.name, description=t.description, parameters_json=t.parameters)
            for t in tools]


def constraint_from_proto(c: common_pb2.OutputConstraint, path: str) -> Constraint:
    """OutputConstraint -> Constraint; one with no kind set, or json_object false, is refused
    naming `path` (the request's field: options.constraint, sampling.constraint)."""
    kind = c.WhichOneof("kind")
    if kind is None:
        raise InvalidRequest(f"{path}: set one of json_schema, regex, grammar, choice, json_object")
    if kind == "choice":
        return Constraint("choice", tuple(c.choice.values))
    if kind == "json_object":
        if not c.json_object:
            raise InvalidRequest(f"{path}.json_object: must be true when set")
        return Constraint("json_object")
    return Constraint(kind, getattr(c, kind))  # json_schema, regex, grammar


def constraint_to_proto(c: Constraint) -> common_pb2.OutputConstraint:
    """Constraint -> OutputConstraint."""
    if c.kind == "choice":
        return common_pb2.OutputConstraint(choice=common_pb2.OutputConstraint.Choices(values=list(c.value)))
    if c.kind == "json_object":
        return common_pb2.OutputConstraint(json_object=True)
    message = common_pb2.OutputConstraint()
    setattr(message, c.kind, str(c.value))  # json_schema, regex, grammar
    return message
