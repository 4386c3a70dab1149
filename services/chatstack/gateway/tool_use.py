"""Tool use, as a request asks for it and as the answer stage serves it.

The tools go into the prompt (the model's chat template shows them), and the choice says how
calls come back:

- `none`: text only; nothing is parsed;
- `auto`: the model answers in text or calls tools in its own format, read back by the
  gateway's configured parser (`tool_call_parser`: hermes, llama3_json);
- `required`: the answer is constrained to a JSON array of calls of the offered tools, each
  `{"name": <one of them>, "arguments": <its parameters' schema>}` (one call when parallel
  calls are off), so it is always a valid call;
- a named function: the answer is constrained to that function's parameters' schema and is
  its arguments.

A structured-output constraint (`response_format`) and a constrained tool choice would both
decide the answer's shape: asking for both is refused, as is `response_format` with `auto`
(the model could then never call a tool).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from chatstack.core.chat_message import FunctionTool
from chatstack.core.errors import InvalidRequest
from chatstack.core.structured_output import Constraint
from chatstack.gateway.tool_parsers import PARSERS, ArgumentsParser, ToolCallParser

ToolChoiceKind = Literal["none", "auto", "required", "function"]
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolFields:
    """The caller's names of the tool options: `tool` formats with the tool's index."""

    tools: str = "options.tools"
    tool: str = "options.tools[{i}]"
    parameters: str = "parameters_json"
    choice: str = "options.tool_choice"
    constraint: str = "options.constraint"


@dataclass(frozen=True)
class ToolUse:
    """The tools a request offers and how the model may call them (see module docstring)."""

    tools: tuple[FunctionTool, ...]
    choice: ToolChoiceKind = "auto"
    function: str = ""  # the named function (choice "function")
    parallel: bool = True

    def check(self, fields: ToolFields, max_tools: int, constrained: bool) -> None:
        """INVALID_ARGUMENT naming the caller's field that is wrong; `constrained`: the request
        also asks for a structured-output constraint."""
        if len(self.tools) > max_tools:
            raise InvalidRequest(f"{fields.tools}: {len(self.tools)} tools exceed the limit of {max_tools}")
        seen: set[str] = set()
        for i, tool in enumerate(self.tools):
            path = fields.tool.format(i=i)
            if not NAME.match(tool.name):
                raise InvalidRequest(f"{path}.name: {tool.name!r} is not 1-64 letters, digits, '_' or '-'")
            if tool.name in seen:
                raise InvalidRequest(f"{path}.name: {tool.name!r} is offered twice")
            seen.add(tool.name)
            _check_schema(tool, f"{path}.{fields.parameters}")
        if self.choice in ("required", "function") and not self.tools:
            raise InvalidRequest(f"{fields.choice}: {self.choice} needs tools")
        if self.choice == "function" and self.function not in seen:
            raise InvalidRequest(f"{fields.choice}: no tool named {self.function!r}")
        if constrained and self.choice != "none" and self.tools:
            raise InvalidRequest(f"{fields.constraint}: cannot be combined with tool_choice {self.choice}"
                                 " (both decide the answer's shape); use tool_choice none")

    @property
    def parses(self) -> bool:
        """Whether calls are read back from the answer."""
        return bool(self.tools) and self.choice != "none"

    @property
    def call_limit(self) -> int | None:
        """Calls one answer may make (None: any)."""
        return None if self.parallel else 1

    def constraint(self) -> Constraint | None:
        """The constraint that makes the answer a call (required, named), or None."""
        if self.choice == "function":
            tool = next(t for t in self.tools if t.name == self.function)
            return Constraint("json_schema", json.dumps(tool.parameters_schema()))
        if self.choice == "required":
            calls = [{"type": "object", "properties": {"name": {"type": "string", "enum": [t.name]},
                                                        "arguments": t.parameters_schema()},
                      "required": ["name", "arguments"], "additionalProperties": False} for t in self.tools]
            array: dict[str, Any] = {"type": "array", "minItems": 1,
                                     "items": calls[0] if len(calls) == 1 else {"anyOf": calls}}
            if not self.parallel:
                array["maxItems"] = 1
            return Constraint("json_schema", json.dumps(array))
        return None

    def parser(self, fmt: str) -> ToolCallParser | None:
        """A parser of this request's answers (`fmt`: the model's format, for auto)."""
        if not self.parses:
            return None
        if self.choice == "function":
            return ArgumentsParser(self.function)
        return PARSERS["json_array" if self.choice == "required" else fmt]()


def _check_schema(tool: FunctionTool, path: str) -> None:
    if not tool.parameters:
        return
    try:
        schema = json.loads(tool.parameters)
    except ValueError as exc:
        raise InvalidRequest(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{path}: must be a JSON schema object")


def tool_use(tools: list[FunctionTool], choice: str | None, function: str,
             parallel: bool | None) -> ToolUse | None:
    """A request's tool use from its parts (None: no tools, and no choice that needs them;
    choice None means auto)."""
    if not tools and choice in (None, "none", "auto"):
        return None
    return ToolUse(tuple(tools), choice or "auto", function, parallel is not False)  # type: ignore[arg-type]
