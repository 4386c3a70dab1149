"""ChatService servicer: authenticate, convert, call the chat dataplane — nothing else."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import grpc

from chatstack.core.errors import InvalidRequest
from chatstack.core.proto_convert import constraint_from_proto, tool_calls_to_proto, tools_from_proto
from chatstack.core.request_context import metadata_value
from chatstack.core.roles import TOOL, USER
from chatstack.gateway.auth import ApiKeyAuthenticator
from chatstack.gateway.flows import GatewayFlows
from chatstack.gateway.model import ChatEvent, ChatOptions, DeltaEvent, SessionEvent
from chatstack.gateway.plan import Plan
from chatstack.gateway.preferences import Feedback
from chatstack.gateway.session_codec import RATING_NAMES
from chatstack.gateway.session_records import Message
from chatstack.gateway.tool_use import ToolUse, tool_use
from chatstack.session.wire import header_to_proto, turn_to_proto
from chatstack.v1 import chat_pb2, chat_pb2_grpc, common_pb2

FINISH_VALUES = {"stop": common_pb2.FINISH_REASON_STOP, "length": common_pb2.FINISH_REASON_LENGTH,
                 "abort": common_pb2.FINISH_REASON_ABORT, "tool_calls": common_pb2.FINISH_REASON_TOOL_CALLS,
                 "content_filter": common_pb2.FINISH_REASON_CONTENT_FILTER}
MODERATION_STAGES = {"input": chat_pb2.MODERATION_STAGE_INPUT, "output": chat_pb2.MODERATION_STAGE_OUTPUT}
TOOL_MODES = {chat_pb2.TOOL_CHOICE_MODE_UNSPECIFIED: None, chat_pb2.TOOL_CHOICE_MODE_NONE: "none",
              chat_pb2.TOOL_CHOICE_MODE_AUTO: "auto", chat_pb2.TOOL_CHOICE_MODE_REQUIRED: "required"}
REWARD_STATUS = {"scored": chat_pb2.REWARD_STATUS_SCORED, "pending": chat_pb2.REWARD_STATUS_PENDING,
                 "off": chat_pb2.REWARD_STATUS_OFF}


def options_from_proto(o: chat_pb2.ChatOptions) -> ChatOptions:
    """ChatOptions message -> ChatOptions."""
    def opt(name: str) -> Any:
        return getattr(o, name) if o.HasField(name) else None

    return ChatOptions(max_tokens=o.max_tokens, temperature=opt("temperature"), top_p=opt("top_p"),
                       top_k=opt("top_k"), seed=opt("seed"), stop=tuple(o.stop),
                       best_of=max(1, o.best_of), context_token_budget=o.context_token_budget,
                       echo_prompt=o.echo_prompt,
                       constraint=constraint_from_proto(o.constraint, "options.constraint")
                       if o.HasField("constraint") else None, tools=_tool_use(o))


def _tool_use(o: chat_pb2.ChatOptions) -> ToolUse | None:
    choice = o.tool_choice
    named = choice.function_name if choice.WhichOneof("choice") == "function_name" else ""
    mode = "function" if named else TOOL_MODES.get(choice.mode, "invalid")
    if mode == "invalid":
        raise InvalidRequest(f"options.tool_choice.mode: {choice.mode} is not a ToolChoiceMode")
    parallel = o.parallel_tool_calls if o.HasField("parallel_tool_calls") else None
    return tool_use(list(tools_from_proto(o.tools)), mode, named, parallel)


def chat_turns(request: chat_pb2.ChatRequest) -> list[tuple[Message, str]]:
    """The turns a Chat answers (the user's message, or tools' results), each with its field."""
    if not request.tool_results:
        return [(Message(USER, request.message), "message")]
    if request.message:
        raise InvalidRequest("message: send a message or tool_results, not both")
    return [(Message(TOOL, r.output, tool_call_id=r.tool_call_id), f"tool_results[{i}].output")
            for i, r in enumerate(request.tool_results)]


def fill_event(message: Any, event: ChatEvent) -> Any:
    """Write a chat event into a ChatResponse / RegenerateResponse / EditResponse."""
    if isinstance(event, SessionEvent):
        message.session.CopyFrom(chat_pb2.ChatSessionInfo(
            session_id=event.session_id, created=event.created, user_turn_id=event.user_turn_id,
            context_turns=event.context_turns, context_truncated=event.context_truncated,
            prompt_tokens=event.prompt_tokens, prompt=event.prompt))
    elif isinstance(event, DeltaEvent):
        message.delta.text = event.text
        message.delta.token_ids.extend(event.token_ids)
        message.delta.tool_calls.extend(chat_pb2.ToolCallDelta(
            index=d.index, id=d.id, name=d.name, arguments=d.arguments) for d in event.tool_calls)
    else:
        final, answer = message.final, event.answer
        final.assistant_turn_id, final.text = event.assistant_turn_id, answer.best.text
        final.reward_score = answer.reward_score
        final.finish_reason = FINISH_VALUES.get(answer.best.finish_reason,
                                                common_pb2.FINISH_REASON_UNSPECIFIED)
        final.session_version = event.session_version
        final.tool_calls.extend(tool_calls_to_proto(answer.best.tool_calls))
        final.reward_status = REWARD_STATUS[answer.reward_status]
        final.candidates.extend(chat_pb2.CandidateScore(
            index=c.index, reward_score=c.reward_score, text=c.text,
            completion_tokens=c.completion_tokens, chosen=c.chosen) for c in answer.candidates)
        if (m := answer.best.moderation) is not None:
            final.moderation.CopyFrom(chat_pb2.Moderation(
                stage=MODERATION_STAGES[m.stage], category=m.category, flagged_by=m.flagged_by,
                scores=m.scores, rule=m.rule, at_token=m.at_token, released_tokens=m.released_tokens,
                refusal=m.refusal))
        final.usage.prompt_tokens = answer.prompt_tokens
        final.usage.completion_tokens = answer.completion_tokens
        final.usage.total_tokens = answer.prompt_tokens + answer.completion_tokens
        for stage, seconds in event.timings.items():
            setattr(final.timings, f"{stage}_seconds", seconds)
    return message


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """Serves ChatService: every RPC authenticates the API key and acts as its owner."""

    def __init__(self, flows: GatewayFlows, auth: ApiKeyAuthenticator) -> None:
        self.dataplane = flows.dataplane
        self.conversations = flows.conversations
        self.preferences = flows.preferences
        self.planner = flows.planner
        self.auth = auth

    def _plan(self, options: chat_pb2.ChatOptions) -> Plan:
        return self.planner.plan(options_from_proto(options))

    def _owner(self, context: grpc.aio.ServicerContext) -> str:
        return self.auth.owner_for(metadata_value(context.invocation_metadata(), "authorization"))

    async def Chat(self, request: chat_pb2.ChatRequest,
                   context: grpc.aio.ServicerContext) -> AsyncGenerator[chat_pb2.ChatResponse]:
        """Send a message and stream the answer."""
        owner = self._owner(context)
        turns = chat_turns(request)
        self.dataplane.check_turns([m for m, _ in turns], "tool_results")
        for message, field in turns:
            self.dataplane.check(message, field)
        async with aclosing(self.dataplane.chat(owner, request.session_id, request.system_prompt,
                            [m for m, _ in turns], self._plan(request.options))) as source:
            async for event in source:
                yield fill_event(chat_pb2.ChatResponse(), event)

    async def Regenerate(self, request: chat_pb2.RegenerateRequest,
                         context: grpc.aio.ServicerContext) -> AsyncGenerator[chat_pb2.RegenerateResponse]:
        """Answer the last user turn again."""
        owner = self._owner(context)
        if not request.session_id:
            raise InvalidRequest("session_id: empty")
        async with aclosing(self.dataplane.regenerate(owner, request.session_id,
                            self._plan(request.options))) as source:
            async for event in source:
                yield fill_event(chat_pb2.RegenerateResponse(), event)

    async def Edit(self, request: chat_pb2.EditRequest,
                   context: grpc.aio.ServicerContext) -> AsyncGenerator[chat_pb2.EditResponse]:
        """Fork below a user turn and chat there."""
        owner = self._owner(context)
        async with aclosing(self.dataplane.edit(owner, request.session_id, request.turn_id, request.message,
                            self._plan(request.options))) as source:
            async for event in source:
                yield fill_event(chat_pb2.EditResponse(), event)

    async def Undo(self, request: chat_pb2.UndoRequest,
                   context: grpc.aio.ServicerContext) -> chat_pb2.UndoResponse:
        """Remove the last exchange."""
        removed, version = await self.dataplane.undo(self._owner(context), request.session_id)
        return chat_pb2.UndoResponse(removed_turns=[turn_to_proto(t) for t in removed],
                                     session_version=version)

    async def CreateSession(self, request: chat_pb2.ChatServiceCreateSessionRequest,
                            context: grpc.aio.ServicerContext) -> chat_pb2.ChatServiceCreateSessionResponse:
        """Create a session."""
        session = await self.conversations.create_session(
            self._owner(context), request.system_prompt, dict(request.metadata))
        return chat_pb2.ChatServiceCreateSessionResponse(session=header_to_proto(session))

    async def GetSession(self, request: chat_pb2.ChatServiceGetSessionRequest,
                         context: grpc.aio.ServicerContext) -> chat_pb2.ChatServiceGetSessionResponse:
        """Read a session header."""
        session = await self.conversations.get_session(self._owner(context), request.session_id)
        return chat_pb2.ChatServiceGetSessionResponse(session=header_to_proto(session))

    async def ListSessions(self, request: chat_pb2.ChatServiceListSessionsRequest,
                           context: grpc.aio.ServicerContext) -> chat_pb2.ChatServiceListSessionsResponse:
        """List the caller's sessions."""
        page = await self.conversations.list_sessions(self._owner(context), request.page_size,
                                                      request.page_token)
        return chat_pb2.ChatServiceListSessionsResponse(sessions=[header_to_proto(s) for s in page.sessions],
                                                        next_page_token=page.next_page_token)

    async def DeleteSession(self, request: chat_pb2.ChatServiceDeleteSessionRequest,
                            context: grpc.aio.ServicerContext) -> chat_pb2.ChatServiceDeleteSessionResponse:
        """Delete a session."""
        await self.conversations.delete_session(self._owner(context), request.session_id)
        return chat_pb2.ChatServiceDeleteSessionResponse()

    async def GetHistory(self, request: chat_pb2.GetHistoryRequest,
                         context: grpc.aio.ServicerContext) -> chat_pb2.GetHistoryResponse:
        """The full history, oldest first, paged."""
        system_prompt, page = await self.conversations.history(
            self._owner(context), request.session_id, request.page_size, request.page_token)
        return chat_pb2.GetHistoryResponse(system_prompt=system_prompt,
                                           turns=[turn_to_proto(t) for t in page.turns],
                                           next_page_token=page.next_page_token)

    async def SubmitFeedback(self, request: chat_pb2.SubmitFeedbackRequest,
                             context: grpc.aio.ServicerContext) -> chat_pb2.SubmitFeedbackResponse:
        """Rate an assistant turn (training data for the reward model)."""
        result = await self.preferences.feedback(self._owner(context), Feedback(
            request.session_id, request.turn_id, RATING_NAMES.get(request.rating, str(request.rating)),
            request.preferred_candidate if request.HasField("preferred_candidate") else None, request.reason))
        return chat_pb2.SubmitFeedbackResponse(event_id=result.event_id, replaced=result.replaced)
