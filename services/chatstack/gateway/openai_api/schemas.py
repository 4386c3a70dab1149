"""Request bodies of the OpenAI-compatible HTTP API, and their translation to the chat flows'
domain objects (shapes and edge cases as vLLM's OpenAI server and OpenAI's own API reference)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from chatstack.core.chat_message import FunctionTool, ToolCall
from chatstack.core.errors import InvalidRequest
from chatstack.core.roles import ASSISTANT, SYSTEM, TOOL, USER
from chatstack.gateway.model import ChatOptions, Constraint
from chatstack.gateway.session_records import Message as ChatMessage
from chatstack.gateway.tool_use import ToolUse, tool_use

#: The roles an OpenAI message may have, by the role they are (`chatstack.core.roles`; "developer"
#: is OpenAI's newer name for the system role).
INPUT_ROLES = {"system": SYSTEM, "developer": SYSTEM, "user": USER, "assistant": ASSISTANT, "tool": TOOL}


class TextPart(BaseModel):
    """A text content part (the only kind served: no images or audio)."""

    type: Literal["text", "input_text", "output_text"]
    text: str


def _absent(value: Any) -> bool:
    return value is None or value == [] or value == {}


# Fields that change what a request means when set, by what value leaves the answer unchanged.
NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "functions": _absent, "logit_bias": _absent, "include": _absent,
    "function_call": lambda v: v in (None, "none", "auto"),
    "modalities": lambda v: v is None or v == ["text"],
    "reasoning_effort": _absent, "reasoning": _absent, "verbosity": _absent, "audio": _absent,
    "web_search_options": _absent, "prompt": _absent, "background": lambda v: v in (None, False),
    "top_logprobs": lambda v: v in (None, 0), "refusal": _absent,
}


class OpenAIBody(BaseModel):
    """A request body: fields chatstack does not declare are kept (`model_extra`) for
    `check_supported` to judge, never silently dropped."""

    model_config = ConfigDict(extra="allow")

    #: Undeclared fields accepted because they do not change the answer.
    ACCEPTED: ClassVar[frozenset[str]] = frozenset()


def check_supported(body: OpenAIBody, path: str = "") -> None:
    """INVALID_ARGUMENT naming the first field that would change the answer and is not
    implemented, or that is not a field of this request at all, or a string that is not valid
    Unicode (a lone surrogate: no backend could store or encode it)."""
    for name, value in (body.model_extra or {}).items():
        field = f"{path}{name}"
        if name in body.ACCEPTED or (name in NEUTRAL and NEUTRAL[name](value)):
            continue
        if name in NEUTRAL:
            raise InvalidRequest(f"{field}: not supported by this server (chatstack refuses it rather than "
                                 "answer as if it were not set)")
        raise InvalidRequest(f"{field}: unrecognized request argument")
    for name in type(body).model_fields:
        _check_value(getattr(body, name), f"{path}{name}")


def _check_value(value: Any, path: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequest(f"{path}: not valid Unicode (a lone surrogate at {exc.start})") from None
    elif isinstance(value, OpenAIBody):
        check_supported(value, f"{path}.")
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _check_value(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(key, f"{path}.<key>")
            _check_value(item, f"{path}.{key}")


class FunctionCallIn(BaseModel):
    """`function` of an assistant message's tool call."""

    name: str
    arguments: str


class ToolCallIn(BaseModel):
    """A tool call of an assistant message the caller sends back."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


class Message(OpenAIBody):
    """One message of a conversation the caller sends: an assistant message may carry its tool
    calls, a tool message answers one of them (`tool_call_id`)."""

    ACCEPTED = frozenset({"name"})

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    def as_chat_message(self, path: str) -> ChatMessage:
        """The message as the flows take it, or INVALID_ARGUMENT naming what is missing."""
        if self.role == "tool" and not self.tool_call_id:
            raise InvalidRequest(f"{path}.tool_call_id: required on a tool message")
        if self.tool_calls and self.role != "assistant":
            raise InvalidRequest(f"{path}.tool_calls: only an assistant message calls tools")
        calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or ())
        return ChatMessage(INPUT_ROLES[self.role], self.text(), calls,
                           self.tool_call_id or "" if self.role == "tool" else "")

    def text(self) -> str:
        """The message's text (parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class JsonSchemaFormat(BaseModel):
    """`response_format.json_schema` of chat completions."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None  # the answer always matches the schema: constrained decoding


class ResponseFormat(BaseModel):
    """`response_format` of chat completions: text, any JSON object, or JSON for a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def constraint(self, path: str = "response_format") -> Constraint | None:
        """The structured-output constraint it asks for (None: free text)."""
        if self.type == "json_object":
            return Constraint("json_object")
        if self.type == "json_schema":
            if self.json_schema is None:
                raise InvalidRequest(f"{path}.json_schema: required with type json_schema")
            return Constraint("json_schema", json.dumps(self.json_schema.schema_))
        return None


class TextFormat(BaseModel):
    """`text.format` of Responses: like chat completions' response_format, with the schema's
    fields beside `type`."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    def constraint(self) -> Constraint | None:
        """The structured-output constraint it asks for (None: free text)."""
        if self.type == "json_object":
            return Constraint("json_object")
        if self.type == "json_schema":
            if self.schema_ is None:
                raise InvalidRequest("text.format.schema: required with type json_schema")
            return Constraint("json_schema", json.dumps(self.schema_))
        return None


class TextConfig(BaseModel):
    """`text` of Responses."""

    format: TextFormat | None = None
    verbosity: Literal["medium"] | None = None  # others would change the answer: not served


class FunctionDefinition(BaseModel):
    """`function` of a chat-completions tool."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # required and named calls are always constrained to the schema

    def as_tool(self) -> FunctionTool:
        """The tool as the flows take it."""
        return FunctionTool(self.name, self.description or "",
                            json.dumps(self.parameters) if self.parameters is not None else "")


class ToolDefinition(BaseModel):
    """A chat-completions tool (functions only)."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    """`function` of a named tool choice."""

    name: str


class NamedToolChoice(BaseModel):
    """`tool_choice: {"type": "function", "function": {"name": ...}}`."""

    type: Literal["function"]
    function: NamedFunction


class StreamOptions(BaseModel):
    """`stream_options`."""

    include_usage: bool = False


class ChatCompletionRequest(OpenAIBody):
    """`POST /v1/chat/completions`. `best_of` is chatstack's extension: generate that many
    candidates, rank them with the reward model, return the best `n` with their rewards."""

    ACCEPTED = frozenset({"user", "metadata", "store", "service_tier", "prompt_cache_key",
                          "safety_identifier", "prediction"})

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0)
    n: int = Field(1, ge=1)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    best_of: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    def constraint_field(self) -> str:
        """Where a refused constraint is named: the schema, or the format itself."""
        f = self.response_format
        return "response_format.json_schema.schema" if f and f.type == "json_schema" else "response_format"

    def conversation(self) -> list[ChatMessage]:
        """The conversation as the flows take it."""
        return [m.as_chat_message(f"messages[{i}]") for i, m in enumerate(self.messages)]

    def tool_use(self) -> ToolUse | None:
        """The tools offered and the tool choice."""
        named = self.tool_choice if isinstance(self.tool_choice, NamedToolChoice) else None
        return tool_use([t.function.as_tool() for t in self.tools or ()],
                        "function" if named else self.tool_choice,  # type: ignore[arg-type]
                        named.function.name if named else "", self.parallel_tool_calls)

    def options(self) -> ChatOptions:
        """The sampling options as the flows take them."""
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs: needs logprobs: true")
        if self.best_of is not None and self.best_of < self.n:
            raise InvalidRequest(f"best_of: {self.best_of} is less than n ({self.n})")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return ChatOptions(
            max_tokens=self.max_completion_tokens or self.max_tokens or 0, temperature=self.temperature,
            top_p=self.top_p, seed=self.seed, stop=stop, best_of=self.best_of or 1, n=self.n,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            constraint=self.response_format.constraint() if self.response_format else None,
            tools=self.tool_use())


class InputMessage(BaseModel):
    """A message item of a Responses `input` or a new conversation's `items`."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        """The item's text (parts joined)."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallOutputItem(BaseModel):
    """A `function_call_output` input item: a tool's result for one of the last answer's calls."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call_output"]
    call_id: str
    output: str


class FunctionCallItem(BaseModel):
    """A `function_call` input item (an answer's call, as clients send the output back)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class ResponsesTool(FunctionDefinition):
    """A Responses function tool (a chat-completions `function` with its `type` beside it)."""

    type: Literal["function"]


class ResponsesNamedTool(BaseModel):
    """`tool_choice: {"type": "function", "name": ...}`."""

    type: Literal["function"]
    name: str


def _item_type(value: Any) -> str:
    """An input item's type (a message item may leave it out)."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) else "message"


InputItem = Annotated[Annotated[InputMessage, Tag("message")]
                      | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
                      | Annotated[FunctionCallItem, Tag("function_call")], Discriminator(_item_type)]


class ConversationRef(BaseModel):
    """`conversation: {"id": ...}`."""

    id: str


class ResponseCreateRequest(OpenAIBody):
    """`POST /v1/responses`. chatstack stores one user message per response: `input` is that
    message (a string, or items of which system/developer ones add to `instructions`). `seed` and
    `best_of` are chatstack's extensions, as in chat completions (the response then carries the
    answer's `reward`)."""

    ACCEPTED = frozenset({"user", "metadata", "service_tier", "prompt_cache_key", "safety_identifier",
                          "max_tool_calls", "stream_options"})  # max_tool_calls: built-in tools only

    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    conversation: str | ConversationRef | None = None
    previous_response_id: str | None = None
    store: bool = True
    truncation: Literal["auto", "disabled"] = "disabled"
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0)  # chatstack extension, as in chat completions
    best_of: int | None = Field(None, ge=1)  # chatstack extension, as in chat completions
    text: TextConfig | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ResponsesNamedTool | None = None
    parallel_tool_calls: bool | None = None

    def constraint_field(self) -> str:
        """Where a refused constraint is named: the schema, or the format itself."""
        f = self.text.format if self.text else None
        return "text.format.schema" if f and f.type == "json_schema" else "text.format"

    def tool_use(self) -> ToolUse | None:
        """The tools offered and the tool choice."""
        named = self.tool_choice if isinstance(self.tool_choice, ResponsesNamedTool) else None
        return tool_use([t.as_tool() for t in self.tools or ()],
                        "function" if named else self.tool_choice,  # type: ignore[arg-type]
                        named.name if named else "", self.parallel_tool_calls)

    def tools_json(self) -> tuple[list[dict[str, Any]], Any]:
        """The response's `tools` and `tool_choice` (as asked)."""
        tools = [t.model_dump(exclude_none=True) for t in self.tools or ()]
        choice = self.tool_choice
        return tools, (choice.model_dump() if isinstance(choice, BaseModel) else choice) or "auto"

    def text_json(self) -> dict[str, Any]:
        """The response's `text` (as asked; free text by default)."""
        f = self.text.format if self.text else None
        return {"format": f.model_dump(by_alias=True, exclude_none=True) if f else {"type": "text"}}

    def conversation_id(self) -> str | None:
        """The conversation's public id, if one is named."""
        return self.conversation.id if isinstance(self.conversation, ConversationRef) else self.conversation

    def input_and_instructions(self) -> tuple[list[tuple[ChatMessage, str]], str | None]:
        """The turns answered, each with its field (a user's message, or the results of the last
        answer's tool calls), and the instructions (with any system/developer items)."""
        if isinstance(self.input, str):
            return [(ChatMessage(USER, self.input), "input")], self.instructions
        messages = [m for m in self.input if isinstance(m, InputMessage)]
        users = [m for m in messages if m.role == "user"]
        outputs = [(i, item) for i, item in enumerate(self.input) if isinstance(item, FunctionCallOutputItem)]
        assistant = any(m.role == "assistant" for m in messages)
        if (len(users) != 1 and not outputs) or (users and outputs) or assistant \
                or any(isinstance(i, FunctionCallItem) for i in self.input):
            raise InvalidRequest("input: one user message, or function_call_output items, per response "
                                 "(chatstack stores the conversation, calls included: continue it with "
                                 "conversation or previous_response_id)")
        system = [m.text() for m in messages if m.role in ("system", "developer")]
        instructions = "\n\n".join([*([self.instructions] if self.instructions else []), *system]) or None
        if outputs:
            return [(ChatMessage(TOOL, item.output, tool_call_id=item.call_id), f"input[{i}].output")
                    for i, item in outputs], instructions
        return [(ChatMessage(USER, users[0].text()), "input")], instructions

    def options(self) -> ChatOptions:
        """The sampling options as the flows take them."""
        f = self.text.format if self.text else None
        return ChatOptions(max_tokens=self.max_output_tokens or 0, temperature=self.temperature,
                           top_p=self.top_p, seed=self.seed, best_of=self.best_of or 1,
                           truncate=self.truncation == "auto", constraint=f.constraint() if f else None,
                           tools=self.tool_use())


class FeedbackRequest(BaseModel):
    """`POST /v1/responses/{id}/feedback` (chatstack extension): a rating of the response's answer
    and/or the best-of candidate preferred, with a reason."""

    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down"] | None = None
    preferred_candidate: int | None = Field(None, ge=0, le=64)
    reason: str = Field("", max_length=2048)


class ModerationRequest(OpenAIBody):
    """`POST /v1/moderations`: texts to judge (a string, strings, or text parts; no images)."""

    input: str | list[str | TextPart]
    model: str | None = None

    def texts(self) -> list[str]:
        """The texts, in order."""
        items = [self.input] if isinstance(self.input, str) else self.input
        return [item if isinstance(item, str) else item.text for item in items]


class ConversationCreateRequest(OpenAIBody):
    """`POST /v1/conversations`: system/developer items become the system prompt, user and
    assistant items its first turns."""

    items: list[InputMessage] = Field(default_factory=list, max_length=20)
    metadata: dict[str, str] | None = None
