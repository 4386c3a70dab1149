"""`/v1/responses` and `/v1/conversations` in OpenAI's shapes, over the transport-free `Responses`,
`Conversations` and (for `store: false`) `Completions` flows."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from chatstack.core.chat_message import ToolCall
from chatstack.core.errors import ChatstackError, InvalidRequest, NotFound, code_for
from chatstack.core.roles import ASSISTANT, SYSTEM, TOOL, TURN_ROLES, USER
from chatstack.gateway.flows import GatewayFlows
from chatstack.gateway.model import Answer, DeltaEvent, FinalEvent, SessionEvent
from chatstack.gateway.openai_api.schemas import (
    ConversationCreateRequest,
    FeedbackRequest,
    ResponseCreateRequest,
)
from chatstack.gateway.plan import RESPONSES_FIELDS, OptionFields, Plan
from chatstack.gateway.responses import ResponseRef, StoredExchange
from chatstack.gateway.session_records import AnswerMeta, Message
from chatstack.session.model import SessionHeader, Turn


def conversation_id(session_id: str) -> str:
    return f"conv_{session_id}"


def session_of(conversation: str, field_name: str = "conversation_id") -> str:
    """A public conversation id back to the session id; NotFound if it is not one of ours."""
    session_id = conversation.removeprefix("conv_")
    if session_id == conversation or not session_id:
        raise NotFound(f"{field_name}: no conversation {conversation!r}")
    return session_id


def message_item(item_id: str, role: str, text: str, status: str = "completed") -> dict[str, Any]:
    """A message item of a response's output or a conversation's items."""
    kind = "output_text" if role == "assistant" else "input_text"
    part: dict[str, Any] = {"type": kind, "text": text}
    if kind == "output_text":
        part["annotations"] = []
    return {"type": "message", "id": item_id, "status": status, "role": role, "content": [part]}


def function_call_item(item_id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    """A function_call item of a response's output or a conversation's items."""
    return {"type": "function_call", "id": item_id, "call_id": call.id, "name": call.name,
            "arguments": call.arguments, "status": status}


def answer_items(turn_id: str, text: str, calls: Iterable[ToolCall],
                 refusal: str = "") -> list[dict[str, Any]]:
    """An answer's output items: its text (if any), then its calls; a stopped answer's message
    holds what streamed (if anything), then the refusal part."""
    if refusal:
        item = message_item(f"msg_{turn_id}", "assistant", text, "incomplete")
        item["content"] = [*(item["content"] if text else []), {"type": "refusal", "refusal": refusal}]
        return [item]
    items = [message_item(f"msg_{turn_id}", "assistant", text)] if text else []
    return items + [function_call_item(f"fc_{turn_id}_{i}", c) for i, c in enumerate(calls)]


def turn_items(turn: Turn) -> list[dict[str, Any]]:
    """A stored turn as conversation items: a message, an answer's calls, a tool's result."""
    if turn.role == TOOL:
        return [{"type": "function_call_output", "id": f"fco_{turn.turn_id}", "call_id": turn.tool_call_id,
                 "output": turn.content, "status": "completed"}]
    if turn.role == ASSISTANT:
        return answer_items(turn.turn_id, turn.content, turn.tool_calls)
    return [message_item(f"msg_{turn.turn_id}", turn.role or USER, turn.content)]


class OutputItems:
    """A streamed answer as Responses output items: the message item opens at its first text, a
    function_call item at each call's name, in the order they come; each closes at the end."""

    def __init__(self) -> None:
        self.kinds: list[str] = []  # per output index: "message" or "function_call"
        self.text = ""
        self.arguments: dict[int, str] = {}  # output index -> arguments so far

    def delta(self, event: DeltaEvent) -> list[tuple[str, dict[str, Any]]]:
        """The events of one delta."""
        out: list[tuple[str, dict[str, Any]]] = []
        if event.text:
            if "message" not in self.kinds:
                self.kinds.append("message")
                out.append(("response.output_item.added", {"output_index": len(self.kinds) - 1,
                            "item": message_item("msg_pending", "assistant", "", "in_progress")}))
            self.text += event.text
            out.append(("response.output_text.delta", {"output_index": self.kinds.index("message"),
                        "content_index": 0, "item_id": "msg_pending", "delta": event.text}))
        for d in event.tool_calls:
            if d.name:
                self.kinds.append("function_call")
                self.arguments[len(self.kinds) - 1] = ""
                out.append(("response.output_item.added", {"output_index": len(self.kinds) - 1, "item":
                            function_call_item(f"fc_pending_{d.index}", ToolCall(d.id, d.name, ""),
                                               "in_progress")}))
            index = self._call_index(d.index)
            if d.arguments:
                self.arguments[index] += d.arguments
                out.append(("response.function_call_arguments.delta", {
                    "output_index": index, "item_id": f"fc_pending_{d.index}", "delta": d.arguments}))
        return out

    def _message_parts_done(self, index: int, item: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """A message's parts closing: its text's .done, and a refusal part added, streamed whole
        (response.refusal.delta) and done."""
        out: list[tuple[str, dict[str, Any]]] = []
        for part_index, part in enumerate(item["content"]):
            at = {"output_index": index, "content_index": part_index, "item_id": item["id"]}
            if part["type"] == "output_text":
                out.append(("response.output_text.done", {**at, "text": part["text"]}))
                continue
            out.append(("response.content_part.added", {**at, "part": {"type": "refusal", "refusal": ""}}))
            out.append(("response.refusal.delta", {**at, "delta": part["refusal"]}))
            out.append(("response.refusal.done", {**at, "refusal": part["refusal"]}))
            out.append(("response.content_part.done", {**at, "part": part}))
        return out

    def _call_index(self, call: int) -> int:
        return [i for i, kind in enumerate(self.kinds) if kind == "function_call"][call]

    def done(self, items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """The closing events, with the final items (an item the stream never opened opens here)."""
        out: list[tuple[str, dict[str, Any]]] = []
        messages = [i for i in items if i["type"] == "message"]
        calls = [i for i in items if i["type"] == "function_call"]
        for kind, item in [("message", m) for m in messages] + [("function_call", c) for c in calls]:
            opened = [i for i, k in enumerate(self.kinds) if k == kind]
            ordinal = (messages if kind == "message" else calls).index(item)
            if ordinal >= len(opened):
                self.kinds.append(kind)
                opened.append(len(self.kinds) - 1)
                out.append(("response.output_item.added", {"output_index": opened[ordinal], "item": item}))
            index = opened[ordinal]
            if kind == "message":
                out += self._message_parts_done(index, item)
            else:
                out.append(("response.function_call_arguments.done", {"output_index": index,
                            "item_id": item["id"], "arguments": item["arguments"]}))
            out.append(("response.output_item.done", {"output_index": index, "item": item}))
        return out


@dataclass
class ResponseDraft:
    """The response object being built (a stream's events carry it as it grows)."""

    body: ResponseCreateRequest
    model: str
    instructions: str | None
    id: str = ""
    conversation: str | None = None
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "in_progress"
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    reward: float | None = None  # chatstack extension: the answer's reward, when it was scored
    incomplete: str | None = None  # why the response is incomplete (content_filter)

    def json(self) -> dict[str, Any]:
        """OpenAI's `response` object (with chatstack's `reward` when the answer was scored)."""
        b = self.body
        extension = {} if self.reward is None else {"reward": self.reward}
        tools, tool_choice = b.tools_json()
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": self.status,
            "model": self.model, "output": self.output, "instructions": self.instructions,
            "previous_response_id": b.previous_response_id,
            "conversation": {"id": self.conversation} if self.conversation else None,
            "store": b.store, "truncation": b.truncation, "temperature": b.temperature, "top_p": b.top_p,
            "max_output_tokens": b.max_output_tokens,
            "parallel_tool_calls": b.parallel_tool_calls is not False, "tool_choice": tool_choice,
            "tools": tools, "text": b.text_json(), "metadata": {}, "error": None,
            "incomplete_details": {"reason": self.incomplete} if self.incomplete else None,
            "usage": self.usage, **extension}


def fields_of(body: ResponseCreateRequest) -> OptionFields:
    """The request's names of the options a plan checks."""
    return replace(RESPONSES_FIELDS, constraint=body.constraint_field())


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}


class ResponsesHandler:
    """Runs Responses and Conversations requests and shapes their answers."""

    def __init__(self, flows: GatewayFlows) -> None:
        self.responses = flows.responses
        self.conversations = flows.conversations
        self.completions = flows.completions
        self.planner = flows.planner

    # -- responses ------------------------------------------------------------------------------
    async def events(self, owner: str, body: ResponseCreateRequest, model: str
                     ) -> AsyncGenerator[tuple[str, dict[str, Any], ResponseDraft]]:
        """(event type, event fields, the response so far) as the answer is made: created, the
        output items' events (`OutputItems`), then completed."""
        inputs, instructions = body.input_and_instructions()
        messages = [m for m, _ in inputs]
        draft = ResponseDraft(body, model, instructions)
        items = OutputItems()
        events: AsyncGenerator[SessionEvent | DeltaEvent | FinalEvent | Answer]
        if not body.store:
            plan, to_answer = self._unstored(body, messages, instructions)
            draft.id = f"resp_{uuid.uuid4().hex}"
            yield "response.created", {}, draft
            events = self.completions.complete(to_answer, plan)
        else:
            conversation = body.conversation_id()
            previous = ResponseRef.decode(body.previous_response_id, "previous_response_id") \
                if body.previous_response_id else None
            plan = self.planner.plan(body.options(), fields_of(body))
            self.responses.check(inputs)
            events = self.responses.create(owner, messages, plan, instructions,
                                           session_of(conversation, "conversation") if conversation else None,
                                           previous)
        async with aclosing(events):
            async for event in events:
                if isinstance(event, SessionEvent):
                    draft.id = ResponseRef(event.session_id, event.user_turn_id).encode()
                    draft.conversation = conversation_id(event.session_id)
                    yield "response.created", {}, draft
                elif isinstance(event, DeltaEvent):
                    for kind, fields in items.delta(event):
                        yield kind, fields, draft
                else:
                    answer = event.answer if isinstance(event, FinalEvent) else event
                    turn_id = event.assistant_turn_id if isinstance(event, FinalEvent) \
                        else uuid.uuid4().hex[:16]
                    draft.status, draft.reward = "completed", answer.best.reward
                    draft.usage = usage(answer.prompt_tokens, answer.completion_tokens)
                    stopped = answer.best.moderation
                    if stopped is not None:
                        draft.status, draft.incomplete = "incomplete", "content_filter"
                    draft.output = answer_items(turn_id, answer.best.text, answer.best.tool_calls,
                                                stopped.refusal if stopped else "")
                    for kind, fields in items.done(draft.output):
                        yield kind, fields, draft

    def _unstored(self, body: ResponseCreateRequest, given: list[Message],
                  instructions: str | None) -> tuple[Plan, list[Message]]:
        """`store: false`: a stateless completion (its plan and messages, checked before anything is
        sent); nothing is kept, the id finds nothing later."""
        if body.conversation_id() or body.previous_response_id:
            raise InvalidRequest("store: false answers without a stored conversation; drop conversation "
                                 "and previous_response_id, or store the response")
        if given[0].role != USER:
            raise InvalidRequest("input: a function_call_output continues a stored response "
                                 "(previous_response_id); with store: false send the conversation to "
                                 "/v1/chat/completions")
        plan = self.planner.plan(body.options(), fields_of(body), stateless=True)
        messages = [Message(SYSTEM, instructions)] if instructions else []
        messages.append(given[0])
        return plan, messages

    async def create(self, owner: str, body: ResponseCreateRequest, model: str) -> dict[str, Any]:
        """The finished response."""
        last: ResponseDraft | None = None
        async with aclosing(self.events(owner, body, model)) as source:
            async for _, _, draft in source:
                last = draft
        assert last is not None
        return last.json()

    async def stream(self, owner: str, body: ResponseCreateRequest, model: str) -> AsyncGenerator[str]:
        """Server-sent events: response.created, .in_progress, then each output item's events
        (.output_item.added, .output_text.delta… / .function_call_arguments.delta…, their .done,
        .output_item.done), .completed. An error before the first event is raised (its HTTP
        status answers); after it, an `error` event ends the stream."""
        sequence = 0

        def sse(kind: str, fields: dict[str, Any]) -> str:
            nonlocal sequence
            sequence += 1
            data = json.dumps({"type": kind, "sequence_number": sequence, **fields})
            return f"event: {kind}\ndata: {data}\n\n"

        sent, last = False, None
        try:
            async with aclosing(self.events(owner, body, model)) as source:
                async for kind, fields, draft in source:
                    last = draft
                    if kind == "response.created":
                        sent = True
                        yield sse(kind, {"response": draft.json()})
                        yield sse("response.in_progress", {"response": draft.json()})
                        continue
                    yield sse(kind, fields)
            if last is not None:
                yield sse(f"response.{last.status}", {"response": last.json()})
        except ChatstackError as exc:
            if not sent:
                raise
            yield sse("error", {"code": code_for(exc), "message": str(exc), "param": None})

    async def get(self, owner: str, response_id: str, model: str) -> dict[str, Any]:
        """A stored response."""
        exchange: StoredExchange = await self.responses.find(owner, ResponseRef.decode(response_id))
        tokens = exchange.answer.token_count
        meta = AnswerMeta.decode(exchange.answer.metadata)
        draft = ResponseDraft(ResponseCreateRequest(model=model, input=exchange.user.content), model, None,
                              id=response_id, conversation=conversation_id(exchange.ref.session_id),
                              created_at=exchange.answer.create_time_ms // 1000, status="completed",
                              output=turn_items(exchange.answer),
                              usage=usage(meta.prompt_tokens or 0, tokens), reward=meta.reward_score)
        if meta.moderation:  # stopped by the safety stage: what streamed, then the refusal part
            streamed = exchange.answer.content.removesuffix(meta.refusal).rstrip()
            draft.status, draft.incomplete = "incomplete", "content_filter"
            draft.output = answer_items(exchange.answer.turn_id, streamed, (), meta.refusal or "-")
        return draft.json()

    async def delete(self, owner: str, response_id: str) -> dict[str, Any]:
        await self.responses.delete(owner, ResponseRef.decode(response_id))
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def feedback(self, owner: str, response_id: str, body: FeedbackRequest) -> dict[str, Any]:
        result = await self.responses.feedback(owner, ResponseRef.decode(response_id), body.rating or "",
                                               body.preferred_candidate, body.reason)
        return {"id": result.event_id, "object": "response.feedback", "response_id": response_id,
                "replaced": result.replaced}

    # -- conversations --------------------------------------------------------------------------
    async def create_conversation(self, owner: str, body: ConversationCreateRequest) -> dict[str, Any]:
        system = "\n\n".join(i.text() for i in body.items if i.role in ("system", "developer"))
        turns = [(i.role, i.text()) for i in body.items if i.role in TURN_ROLES]
        session = await self.conversations.create_with_turns(owner, system, turns, body.metadata)
        return _conversation_json(session)

    async def get_conversation(self, owner: str, conversation: str) -> dict[str, Any]:
        session = await self.conversations.get_session(owner, session_of(conversation))
        return _conversation_json(session)

    async def delete_conversation(self, owner: str, conversation: str) -> dict[str, Any]:
        await self.conversations.delete_session(owner, session_of(conversation))
        return {"id": conversation, "object": "conversation.deleted", "deleted": True}

    async def items(self, owner: str, conversation: str, limit: int, order: str,
                    after: str | None) -> dict[str, Any]:
        """A page of a conversation's items (`after`: the last item id of the previous page)."""
        turns = await self.conversations.all_turns(owner, session_of(conversation))
        items = [item for t in turns for item in turn_items(t)]
        if order == "desc":
            items.reverse()
        start = 0
        if after:
            ids = [i["id"] for i in items]
            if after not in ids:
                raise InvalidRequest(f"after: {after!r} is not an item of {conversation}")
            start = ids.index(after) + 1
        page = items[start:start + limit]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": start + limit < len(items)}


def _conversation_json(session: SessionHeader) -> dict[str, Any]:
    return {"id": conversation_id(session.session_id), "object": "conversation",
            "created_at": session.create_time_ms // 1000, "metadata": dict(session.metadata)}
