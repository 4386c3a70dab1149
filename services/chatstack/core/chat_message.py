"""A chat message as every service sees it: a role, text, and for tool use the calls an
assistant message makes or the call a tool message answers (`ChatMessage` on the wire;
`chatstack.core.proto_convert` converts it). Shaped for chat templates the way HF's
`apply_chat_template` takes them (`as_template`), so a real model's own template renders tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chatstack.core.roles import TOOL


@dataclass(frozen=True)
class ToolCall:
    """A function call of the assistant: its id, the function, the arguments as JSON text."""

    id: str
    name: str
    arguments: str

    def as_template(self) -> dict[str, Any]:
        """HF's shape: arguments as an object when they parse (templates write them with tojson)."""
        try:
            arguments: Any = json.loads(self.arguments)
        except ValueError:
            arguments = self.arguments
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": arguments}}


@dataclass(frozen=True)
class FunctionTool:
    """A function the model may call: name, description, JSON schema of its arguments ("" none)."""

    name: str
    description: str = ""
    parameters: str = ""

    def parameters_schema(self) -> dict[str, Any]:
        """The arguments' schema (an object with no properties when none was given)."""
        return json.loads(self.parameters) if self.parameters else {"type": "object", "properties": {}}

    def as_template(self) -> dict[str, Any]:
        """HF's (and OpenAI's) shape of a tool."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters_schema()}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation (role by name: `chatstack.core.roles`)."""

    role: str  # a wire value no role names arrives as "" (the backend refuses it)
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""

    def as_template(self) -> dict[str, Any]:
        """The message as a chat template reads it."""
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [c.as_template() for c in self.tool_calls]
        if self.role == TOOL:
            message["tool_call_id"] = self.tool_call_id
        return message
