"""Typed clients of the backend services, over a transport: gRPC channels (`Downstream`)
or, on Ray Serve, deployment handles (`chatstack.serve.handle_downstream`).

Each method is one call in the gateway's terms (texts in, counts out; a session's turns), with the
stub, request building, deadline, metadata and error mapping hidden here once, so the chat flows
read as what they do. The session client is bound to one owner (`Backends.sessions(owner)`):
every call it makes carries that owner.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from chatstack.core.chat_message import FunctionTool
from chatstack.core.proto_convert import (
    chat_messages_to_proto,
    constraint_to_proto,
    role_value,
    tool_calls_to_proto,
    tools_to_proto,
)
from chatstack.gateway.model import (
    Choice,
    DeltaEvent,
    Generated,
    ModelInfo,
    PositionLogprobs,
    TokenLogprob,
)
from chatstack.gateway.plan import Plan
from chatstack.gateway.session_codec import preference_to_proto
from chatstack.gateway.session_records import (
    Fork,
    Message,
    PreferenceEvent,
    RecordedPreference,
    SessionsPage,
    TurnPush,
    TurnsPage,
    TurnStack,
)
from chatstack.safety import wire as safety_wire
from chatstack.safety.model import CheckItem, Judgement, Policy
from chatstack.session.model import ContextWindow, NewSession, PushResult, SessionHeader, Turn
from chatstack.session.wire import context_from_proto, header_from_proto, turn_from_proto, turns_from_proto
from chatstack.v1 import common_pb2, generation_pb2, reward_pb2, session_pb2, tokenizer_pb2

Messages = Sequence[Message]
#: A choice's finish reason by its wire value ("" when unspecified).
FINISH_REASONS = {common_pb2.FINISH_REASON_STOP: "stop", common_pb2.FINISH_REASON_LENGTH: "length",
                  common_pb2.FINISH_REASON_ABORT: "abort"}


class Transport(Protocol):
    """What the typed clients need of a transport: a unary call of one RPC (by service and method
    name) with deadline, metadata and error mapping, and the generation stream. `route_key` (the
    session id, on generation calls) lets the transport send a session's calls to one replica.
    `Downstream` (gRPC) and `HandleDownstream` (Serve handles) implement it."""

    async def call(self, service: str, method: str, request: Any, owner: str | None = None,
                   timeout: float | None = None,  # noqa: ASYNC109
                   route_key: str | None = None) -> Any: ...

    def generate_stream(self, request: generation_pb2.GenerateStreamRequest, route_key: str | None = None
                        ) -> AsyncGenerator[generation_pb2.GenerateStreamResponse]: ...

    async def close(self) -> None: ...


class Rendering(NamedTuple):
    """A rendered chat template."""

    text: str
    ids: list[int]
    counts: list[int]  # token counts of the messages asked for


@dataclass(frozen=True)
class Ranked:
    """A candidate's place in a ranking: its index among the candidates, and its reward."""

    index: int
    score: float


class TokenizerClient:
    """Counts and chat templates from the tokenizer service."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def count(self, texts: list[str]) -> list[int]:
        """Token counts of texts (no special tokens)."""
        reply = await self._transport.call("tokenizer", "CountTokens",
                                    tokenizer_pb2.CountTokensRequest(texts=texts))
        return list(reply.counts)

    async def render(self, messages: Messages, count: Sequence[int] = (),
                     tools: Sequence[FunctionTool] = ()) -> Rendering:
        """The prompt text and token ids of messages (and the tools the model may call), with the
        generation prompt, and the token counts of the messages at the indices `count`."""
        reply = await self._transport.call("tokenizer", "ApplyChatTemplate",
                                    tokenizer_pb2.ApplyChatTemplateRequest(
                                        messages=chat_messages_to_proto(messages), add_generation_prompt=True,
                                        count_messages=count, tools=tools_to_proto(tools)))
        return Rendering(reply.prompt, list(reply.token_ids), list(reply.message_token_counts))


def sampling_params(plan: Plan) -> generation_pb2.SamplingParams:
    """The generation request's sampling for a plan (an answer is never empty: min_tokens 1)."""
    o = plan.options
    sampling = generation_pb2.SamplingParams(
        n=plan.candidates, max_tokens=plan.max_tokens, min_tokens=1, stop=list(o.stop),
        temperature=plan.temperature, presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty)
    if o.logprobs is not None:
        sampling.logprobs = o.logprobs
    if o.constraint is not None:
        sampling.constraint.CopyFrom(constraint_to_proto(o.constraint))
    for name in ("top_p", "top_k", "seed"):
        value = getattr(o, name)
        if value is not None:
            setattr(sampling, name, value)
    return sampling


def _logprobs(positions: Sequence[generation_pb2.PositionLogprobs]) -> list[PositionLogprobs]:
    return [PositionLogprobs(TokenLogprob(p.sampled.token, p.sampled.logprob),
                             [TokenLogprob(t.token, t.logprob) for t in p.top]) for p in positions]


def _generated(reply: generation_pb2.GenerateResponse) -> Generated:
    return Generated([Choice(c.index, c.text, list(c.token_ids), FINISH_REASONS.get(c.finish_reason, ""),
                             _logprobs(c.logprobs))
                      for c in reply.choices], reply.usage.completion_tokens)


class GenerationClient:
    """Generation over token ids, and the model's facts (asked once)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._info: ModelInfo | None = None

    async def info(self) -> ModelInfo:
        """The generation model's name, version and context length (asked once)."""
        if self._info is None:
            reply = await self._transport.call("generation", "GetModelInfo",
                                               generation_pb2.GetModelInfoRequest())
            self._info = ModelInfo(reply.model, reply.model_version, reply.max_model_len)
        return self._info

    async def max_model_len(self) -> int:
        """The generation model's context length."""
        return (await self.info()).max_model_len

    async def generate(self, ids: list[int], plan: Plan, session_id: str | None = None) -> Generated:
        """Every candidate of `plan` at once (on the session's replica, when routing follows sessions)."""
        reply = await self._transport.call("generation", "Generate", generation_pb2.GenerateRequest(
            token_ids=common_pb2.TokenIds(ids=ids), sampling=sampling_params(plan)), route_key=session_id)
        return _generated(reply)

    async def stream(self, ids: list[int], plan: Plan, session_id: str | None = None
                     ) -> AsyncGenerator[DeltaEvent | Generated]:
        """The one answer's deltas, then all of it; closing the iterator aborts the generation."""
        source = self._transport.generate_stream(generation_pb2.GenerateStreamRequest(
            token_ids=common_pb2.TokenIds(ids=ids), sampling=sampling_params(plan)), route_key=session_id)
        async with aclosing(source):
            async for message in source:
                if message.HasField("delta"):
                    d = message.delta
                    yield DeltaEvent(d.text, list(d.token_ids), 0, _logprobs(d.logprobs))
                else:
                    yield _generated(message.final)


class RewardClient:
    """Scores and rankings; the reward service fits long conversations to its own window."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._info: ModelInfo | None = None

    async def info(self) -> ModelInfo:
        """The reward model's name and version (asked once)."""
        if self._info is None:
            reply = await self._transport.call("reward", "GetModelInfo",
                                               reward_pb2.RewardServiceGetModelInfoRequest())
            self._info = ModelInfo(reply.model, reply.model_version, reply.max_model_len)
        return self._info

    async def score(self, conversation: Messages, response: str) -> float:
        """The reward of one response."""
        reply = await self._transport.call("reward", "Score", reward_pb2.ScoreRequest(
            item=reward_pb2.ScoreItem(conversation=chat_messages_to_proto(conversation), response=response),
            truncation=reward_pb2.TRUNCATION_AUTO))
        return float(reply.score)

    async def rank(self, conversation: Messages, candidates: list[str]) -> list[Ranked]:
        """The candidates' indices and rewards, best first."""
        reply = await self._transport.call("reward", "Rank", reward_pb2.RankRequest(
            conversation=chat_messages_to_proto(conversation), candidates=candidates,
            truncation=reward_pb2.TRUNCATION_AUTO))
        return [Ranked(r.index, float(r.score)) for r in reply.ranked]


class SessionClient:
    """One owner's view of the session service, in records (`session_records`)."""

    def __init__(self, transport: Transport, owner: str) -> None:
        self._transport = transport
        self.owner = owner

    async def _call(self, method: str, request: Any, within: float | None = None) -> Any:
        """One call as the owner; `within` caps its deadline in seconds (rollbacks)."""
        return await self._transport.call("session", method, request, owner=self.owner, timeout=within)

    async def create(self, new: NewSession) -> SessionHeader:
        """A new session."""
        reply = await self._call("CreateSession", session_pb2.CreateSessionRequest(
            session_id=new.session_id, system_prompt=new.system_prompt,
            system_prompt_tokens=new.system_prompt_tokens, metadata=dict(new.metadata),
            pending_ms=new.pending_ms))
        return header_from_proto(reply.session)

    async def get(self, session_id: str) -> SessionHeader:
        """A session's header."""
        reply = await self._call("GetSession", session_pb2.GetSessionRequest(session_id=session_id))
        return header_from_proto(reply.session)

    async def delete(self, session_id: str, within: float | None = None) -> None:
        """Delete a session."""
        await self._call("DeleteSession", session_pb2.DeleteSessionRequest(session_id=session_id), within)

    async def list(self, page_size: int, page_token: str) -> SessionsPage:
        """A page of the owner's sessions."""
        reply = await self._call("ListSessions", session_pb2.ListSessionsRequest(
            page_size=page_size, page_token=page_token))
        return SessionsPage([header_from_proto(s) for s in reply.sessions], reply.next_page_token)

    async def context(self, session_id: str, budget: int) -> ContextWindow:
        """The newest turns that fit `budget`."""
        return context_from_proto(await self._call("GetContext", session_pb2.GetContextRequest(
            session_id=session_id, token_budget=budget)))

    async def push(self, push: TurnPush) -> PushResult:
        """Push a turn (see `TurnPush`)."""
        reply = await self._call("PushTurn", session_pb2.PushTurnRequest(
            session_id=push.session_id, role=role_value(push.role), content=push.content,  # type: ignore[arg-type]
            token_count=push.token_count, metadata=dict(push.metadata),
            expected_version=push.expected_version, pending_ms=push.pending_ms,
            commit_turn_id=push.commit_turn_id, replace_turn_id=push.replace_turn_id,
            commit_session=push.commit_session, tool_calls=tool_calls_to_proto(push.tool_calls),
            tool_call_id=push.tool_call_id, join_pending_turn_id=push.join_pending_turn_id))
        return PushResult(turn_from_proto(reply.turn), reply.version, reply.evicted_turns)

    async def pop(self, session_id: str, version: int | None, within: float | None = None,
                  pending: str = "", count: int = 1) -> TurnStack:
        """Pop the top `count` turns at `version` in one step (top first), or take back the pending
        turn `pending`."""
        reply = await self._call("PopTurn", session_pb2.PopTurnRequest(
            session_id=session_id, expected_version=version, pending_turn_id=pending, count=count), within)
        return TurnStack(turns_from_proto(reply.turns), reply.version)

    async def peek(self, session_id: str, n: int) -> TurnStack:
        """The top n turns, top first."""
        reply = await self._call("PeekTurns", session_pb2.PeekTurnsRequest(session_id=session_id, n=n))
        return TurnStack(turns_from_proto(reply.turns), reply.version)

    async def turns(self, session_id: str, page_size: int, page_token: str) -> TurnsPage:
        """A page of turns, oldest first."""
        reply = await self._call("ListTurns", session_pb2.ListTurnsRequest(
            session_id=session_id, page_size=page_size, page_token=page_token))
        return TurnsPage(turns_from_proto(reply.turns), reply.next_page_token, reply.version)

    async def turns_from(self, session_id: str, turn_id: str, count: int) -> builtins.list[Turn]:
        """The turn `turn_id` and up to `count` - 1 turns above it, oldest first (one read, whatever
        the history's length)."""
        return turns_from_proto((await self._call("GetTurns", session_pb2.GetTurnsRequest(
            session_id=session_id, turn_id=turn_id, count=count))).turns)

    async def all_turns(self, session_id: str) -> builtins.list[Turn]:
        """Every turn of a session, oldest first (all pages)."""
        turns: builtins.list[Turn] = []
        token = ""
        while True:
            page = await self.turns(session_id, 500, token)
            turns += page.turns
            token = page.next_page_token
            if not token:
                return turns

    async def annotate(self, session_id: str, turn_id: str, metadata: dict[str, str]) -> Turn:
        """Merge metadata into a stored turn (the version does not change)."""
        return turn_from_proto((await self._call("AnnotateTurn", session_pb2.AnnotateTurnRequest(
            session_id=session_id, turn_id=turn_id, metadata=metadata))).turn)

    async def fork(self, fork: Fork) -> SessionHeader:
        """A new session from the bottom of another."""
        reply = await self._call("ForkSession", session_pb2.ForkSessionRequest(
            session_id=fork.session_id, before_turn_id=fork.before_turn_id, metadata=dict(fork.metadata),
            new_session_id=fork.new_session_id, pending_ms=fork.pending_ms))
        return header_from_proto(reply.session)

    async def record_preference(self, event: PreferenceEvent,
                                within: float | None = None) -> RecordedPreference:
        """Append a preference event about one of the owner's sessions."""
        reply = await self._call("RecordPreference", session_pb2.RecordPreferenceRequest(
            event=preference_to_proto(event)), within)
        return RecordedPreference(reply.event_id, bool(reply.replaced_event_id))


class SafetyClient:
    """Verdicts of the safety service (the guard model and the rules)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def check(self, items: Sequence[CheckItem], policy: Policy,
                    timeout: float | None = None) -> list[Judgement]:  # noqa: ASYNC109
        """The verdict on each item under `policy`, in order."""
        reply = await self._transport.call("safety", "Check", safety_wire.check_request(items, policy),
                                           timeout=timeout)
        return safety_wire.judgements(reply)


class Backends:
    """The typed clients of one gateway (one set of channels); `safety` only when the gateway has
    a safety service."""

    def __init__(self, transport: Transport, safety: bool = False) -> None:
        self._transport = transport
        self.tokenizer = TokenizerClient(transport)
        self.generation = GenerationClient(transport)
        self.reward = RewardClient(transport)
        self.safety = SafetyClient(transport) if safety else None

    def sessions(self, owner: str) -> SessionClient:
        """The session service as `owner`."""
        return SessionClient(self._transport, owner)

    async def close(self) -> None:
        """Close every channel."""
        await self._transport.close()
