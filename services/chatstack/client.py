"""ChatClient: a small synchronous client of the gateway, used by the CLI, tests and load tests.

    client = ChatClient("127.0.0.1:50050", api_key)
    result = client.chat("hello", on_delta=lambda text: print(text, end=""))
    client.chat("and then?", session_id=result.session_id)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from chatstack.core.retry_policy import retry_channel_options
from chatstack.v1 import chat_pb2, chat_pb2_grpc, common_pb2, session_pb2

OPTION_FIELDS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "best_of", "constraint",
                 "context_token_budget", "echo_prompt", "tools", "tool_choice", "parallel_tool_calls")
TOOL_MODES = {"none": chat_pb2.TOOL_CHOICE_MODE_NONE, "auto": chat_pb2.TOOL_CHOICE_MODE_AUTO,
              "required": chat_pb2.TOOL_CHOICE_MODE_REQUIRED}


def function_tool(name: str, description: str = "", parameters: dict[str, Any] | None = None
                  ) -> common_pb2.FunctionTool:
    """A FunctionTool message (parameters: the arguments' JSON schema)."""
    return common_pb2.FunctionTool(name=name, description=description,
                                   parameters_json=json.dumps(parameters) if parameters is not None else "")


def tool_choice(choice: str) -> chat_pb2.ToolChoice:
    """"none", "auto", "required", or the name of the function to call."""
    if choice in TOOL_MODES:
        return chat_pb2.ToolChoice(mode=TOOL_MODES[choice])
    return chat_pb2.ToolChoice(function_name=choice)


@dataclass
class ChatResult:
    """Everything one Chat/Regenerate/Edit call returned."""

    session_id: str = ""
    created: bool = False
    user_turn_id: str = ""
    context_turns: int = 0
    context_truncated: bool = False
    prompt_tokens: int = 0
    prompt: str = ""
    text: str = ""
    assistant_turn_id: str = ""
    reward_score: float = 0.0
    reward_status: int = 0  # chat_pb2.RewardStatus: SCORED, PENDING (scored later) or OFF
    candidates: list[chat_pb2.CandidateScore] = field(default_factory=list)
    usage: Any = None
    timings: Any = None
    finish_reason: int = 0
    session_version: int = 0
    ttft_seconds: float = 0.0  # measured by the client: call start to first delta
    tool_calls: list[common_pb2.ToolCall] = field(default_factory=list)  # finish_reason TOOL_CALLS
    moderation: chat_pb2.Moderation | None = None  # set when the safety stage stopped the answer
    streamed_text: str = ""  # the deltas' text, as it arrived
    streamed_tokens: int = 0  # the deltas' tokens


def chat_options(**options: Any) -> chat_pb2.ChatOptions:
    """ChatOptions from keyword arguments (max_tokens=64, best_of=4, ...)."""
    unknown = set(options) - set(OPTION_FIELDS)
    if unknown:
        raise TypeError(f"unknown chat options: {sorted(unknown)}")
    message = chat_pb2.ChatOptions()
    for name, value in options.items():
        if value is None:
            continue
        if name == "stop":
            message.stop.extend(value)
        elif name == "constraint":  # a common_pb2.OutputConstraint
            message.constraint.CopyFrom(value)
        elif name == "tools":  # common_pb2.FunctionTool messages (see function_tool)
            message.tools.extend(value)
        elif name == "tool_choice":  # see tool_choice
            message.tool_choice.CopyFrom(tool_choice(value) if isinstance(value, str) else value)
        else:
            setattr(message, name, value)
    return message


def collect(events: Iterator[Any], on_delta: Callable[[str], None] | None = None) -> ChatResult:
    """Fold a stream of Chat/Regenerate/Edit responses into a ChatResult."""
    import time

    start = time.perf_counter()
    result = ChatResult()
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "session":
            s = event.session
            result.session_id, result.created, result.user_turn_id = s.session_id, s.created, s.user_turn_id
            result.context_turns, result.context_truncated = s.context_turns, s.context_truncated
            result.prompt_tokens, result.prompt = s.prompt_tokens, s.prompt
        elif kind == "delta":
            if not result.ttft_seconds:
                result.ttft_seconds = time.perf_counter() - start
            result.streamed_text += event.delta.text
            result.streamed_tokens += len(event.delta.token_ids)
            if on_delta:
                on_delta(event.delta.text)
        elif kind == "final":
            f = event.final
            result.text, result.assistant_turn_id = f.text, f.assistant_turn_id
            result.reward_score, result.reward_status = f.reward_score, f.reward_status
            result.candidates, result.usage, result.timings = list(f.candidates), f.usage, f.timings
            result.finish_reason, result.session_version = f.finish_reason, f.session_version
            result.tool_calls = list(f.tool_calls)
            result.moderation = f.moderation if f.HasField("moderation") else None
    return result


class ChatClient:
    """Talks to the gateway with an API key; every call has a deadline."""

    def __init__(self, target: str, api_key: str, timeout: float = 120.0,
                 channel: grpc.Channel | None = None, application: str = "") -> None:
        """`application`: the Ray Serve application name, when `target` is Serve's gRPC proxy."""
        # Read-only calls that race the gateway's max-connection-age GOAWAY are retried once.
        self.channel = channel or grpc.insecure_channel(target, options=retry_channel_options())
        self.stub = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {api_key}"),)
        if application:
            self.metadata += (("application", application),)
        self.timeout = timeout

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- streaming calls: the returned iterator has .cancel() --------------------------------
    def chat_stream(self, message: str, session_id: str = "", system_prompt: str = "",
                    tool_results: Sequence[tuple[str, str]] = (), **options: Any) -> Any:
        """The raw Chat stream (iterate it; call .cancel() to stop). `tool_results`: (call id,
        output) pairs answering the last answer's tool calls, sent instead of a message."""
        return self.stub.Chat(chat_pb2.ChatRequest(
            session_id=session_id, system_prompt=system_prompt, message=message,
            options=chat_options(**options),
            tool_results=[chat_pb2.ToolResult(tool_call_id=i, output=o) for i, o in tool_results]),
            metadata=self.metadata, timeout=self.timeout)

    def chat(self, message: str, session_id: str = "", system_prompt: str = "",
             on_delta: Callable[[str], None] | None = None, tool_results: Sequence[tuple[str, str]] = (),
             **options: Any) -> ChatResult:
        """Send a message (new session if session_id is empty), or the results of the last
        answer's tool calls, and return the full answer."""
        stream = self.chat_stream(message, session_id, system_prompt, tool_results, **options)
        return collect(stream, on_delta)

    def regenerate(self, session_id: str, on_delta: Callable[[str], None] | None = None,
                   **options: Any) -> ChatResult:
        """Answer the last user message again."""
        return collect(self.stub.Regenerate(chat_pb2.RegenerateRequest(
            session_id=session_id, options=chat_options(**options)),
            metadata=self.metadata, timeout=self.timeout), on_delta)

    def edit(self, session_id: str, turn_id: str, message: str,
             on_delta: Callable[[str], None] | None = None, **options: Any) -> ChatResult:
        """Replace a user turn (in a fork of the session) and answer it."""
        return collect(self.stub.Edit(chat_pb2.EditRequest(
            session_id=session_id, turn_id=turn_id, message=message,
            options=chat_options(**options)), metadata=self.metadata, timeout=self.timeout), on_delta)

    # -- unary calls -------------------------------------------------------------------------
    def undo(self, session_id: str) -> chat_pb2.UndoResponse:
        """Remove the last exchange."""
        return self.stub.Undo(chat_pb2.UndoRequest(session_id=session_id),
                              metadata=self.metadata, timeout=self.timeout)

    def feedback(self, session_id: str, turn_id: str, rating: int = 0, preferred_candidate: int | None = None,
                 reason: str = "") -> chat_pb2.SubmitFeedbackResponse:
        """Rate an assistant turn (rating: preference_pb2.RATING_UP or RATING_DOWN) and/or name
        the best-of candidate preferred."""
        return self.stub.SubmitFeedback(chat_pb2.SubmitFeedbackRequest(
            session_id=session_id, turn_id=turn_id, rating=rating,  # type: ignore[arg-type]
            preferred_candidate=preferred_candidate, reason=reason),
            metadata=self.metadata, timeout=self.timeout)

    def create_session(self, system_prompt: str = "") -> session_pb2.Session:
        """A new, empty session."""
        return self.stub.CreateSession(chat_pb2.ChatServiceCreateSessionRequest(
            system_prompt=system_prompt), metadata=self.metadata, timeout=self.timeout).session

    def get_session(self, session_id: str) -> session_pb2.Session:
        """A session header."""
        return self.stub.GetSession(chat_pb2.ChatServiceGetSessionRequest(session_id=session_id),
                                    metadata=self.metadata, timeout=self.timeout).session

    def list_sessions(self, page_size: int = 50,
                      page_token: str = "") -> chat_pb2.ChatServiceListSessionsResponse:
        """One page of the caller's sessions."""
        return self.stub.ListSessions(chat_pb2.ChatServiceListSessionsRequest(
            page_size=page_size, page_token=page_token), metadata=self.metadata, timeout=self.timeout)

    def delete_session(self, session_id: str) -> None:
        """Delete a session."""
        self.stub.DeleteSession(chat_pb2.ChatServiceDeleteSessionRequest(session_id=session_id),
                                metadata=self.metadata, timeout=self.timeout)

    def history(self, session_id: str) -> tuple[str, list[session_pb2.Turn]]:
        """The system prompt and every turn, oldest first (all pages)."""
        turns: list[session_pb2.Turn] = []
        token, system = "", ""
        while True:
            page = self.stub.GetHistory(chat_pb2.GetHistoryRequest(
                session_id=session_id, page_size=500, page_token=token),
                metadata=self.metadata, timeout=self.timeout)
            system = page.system_prompt
            turns.extend(page.turns)
            token = page.next_page_token
            if not token:
                return system, turns
