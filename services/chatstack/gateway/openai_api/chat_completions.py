"""`POST /v1/chat/completions`: the stateless completion flow in OpenAI's shapes, whole or as
server-sent events (`chat.completion.chunk` objects, then `data: [DONE]`)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from chatstack.core.chat_message import ToolCall
from chatstack.core.errors import ChatstackError
from chatstack.gateway.flows import GatewayFlows
from chatstack.gateway.model import Answer, DeltaEvent, Moderation, PositionLogprobs, TokenLogprob
from chatstack.gateway.openai_api.errors import domain_error_body
from chatstack.gateway.openai_api.schemas import ChatCompletionRequest
from chatstack.gateway.plan import CHAT_COMPLETIONS_FIELDS, Plan
from chatstack.gateway.tool_parsers import CallDelta


def _token_logprob(t: TokenLogprob) -> dict[str, Any]:
    return {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())}


def logprobs_json(positions: list[PositionLogprobs]) -> dict[str, Any]:
    """OpenAI's `logprobs` of a choice: the sampled token and the top alternatives per position."""
    return {"content": [{**_token_logprob(p.sampled), "top_logprobs": [_token_logprob(t) for t in p.top]}
                        for p in positions]}


def tool_calls_json(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    """OpenAI's `message.tool_calls`."""
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls]


def tool_call_deltas_json(deltas: list[CallDelta]) -> list[dict[str, Any]]:
    """OpenAI's `delta.tool_calls`: a call's id, type and name first, then argument fragments."""
    out: list[dict[str, Any]] = []
    for d in deltas:
        if d.name:
            out.append({"index": d.index, "id": d.id, "type": "function",
                        "function": {"name": d.name, "arguments": d.arguments}})
        else:
            out.append({"index": d.index, "function": {"arguments": d.arguments}})
    return out


def usage_json(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's `usage`."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def moderation_json(moderation: Moderation | None) -> dict[str, Any]:
    """A stopped choice's `moderation` (a chatstack extension beside finish_reason
    `content_filter`): where it stopped and why; nothing for an answer that was not stopped."""
    if moderation is None:
        return {}
    m = moderation
    return {"moderation": {"stage": m.stage, "category": m.category, "flagged_by": m.flagged_by,
                           "scores": m.scores, "at_token": m.at_token, "released_tokens": m.released_tokens}}


class ChatCompletionsHandler:
    """Runs one chat-completions request over `Completions` and shapes the answer."""

    def __init__(self, flows: GatewayFlows) -> None:
        self.completions = flows.completions
        self.planner = flows.planner

    def _answers(self, body: ChatCompletionRequest) -> AsyncGenerator[DeltaEvent | Answer]:
        fields = replace(CHAT_COMPLETIONS_FIELDS, constraint=body.constraint_field())
        plan: Plan = self.planner.plan(body.options(), fields, stateless=True)
        return self.completions.complete(body.conversation(), plan)

    async def complete(self, body: ChatCompletionRequest, model: str) -> dict[str, Any]:
        """The whole `chat.completion` object."""
        want_logprobs = body.logprobs
        result: Answer | None = None
        async with aclosing(self._answers(body)) as source:
            async for item in source:
                if isinstance(item, Answer):
                    result = item
        assert result is not None
        choices = []
        for c in result.choices:
            content = (c.text or None) if c.tool_calls else c.text  # OpenAI: null beside calls
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if c.tool_calls:
                message["tool_calls"] = tool_calls_json(c.tool_calls)
            if c.moderation is not None:
                message["content"], message["refusal"] = c.text or None, c.moderation.refusal
            choice: dict[str, Any] = {
                "index": c.index, "message": message,
                "logprobs": logprobs_json(c.logprobs) if want_logprobs else None,
                "finish_reason": c.finish_reason or "stop", **moderation_json(c.moderation)}
            if c.reward is not None:
                choice["reward"] = c.reward  # chatstack extension (best_of)
            choices.append(choice)
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": model, "choices": choices,
                "usage": usage_json(result.prompt_tokens, result.completion_tokens)}

    async def stream(self, body: ChatCompletionRequest, model: str) -> AsyncGenerator[str]:
        """Server-sent events: each choice's role, its text as generated, its finish reason, the
        usage if asked (`stream_options.include_usage`), then `[DONE]`. An error before the first
        event is raised (the caller answers it with its HTTP status); after it, it arrives as an
        `error` event, the status being sent already."""
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model}
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            return f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n"

        started: set[int] = set()
        sent = False
        try:
            async with aclosing(self._answers(body)) as source:
                async for item in source:
                    if isinstance(item, DeltaEvent):
                        delta: dict[str, Any] = {"content": item.text} if item.text or not item.tool_calls \
                            else {}
                        if item.tool_calls:
                            delta["tool_calls"] = tool_call_deltas_json(item.tool_calls)
                        if item.index not in started:
                            started.add(item.index)
                            delta["role"] = "assistant"
                        choice = {"index": item.index, "delta": delta, "finish_reason": None,
                                  "logprobs": logprobs_json(item.logprobs) if body.logprobs else None}
                        sent = True
                        yield chunk([choice])
                        continue
                    sent = True
                    for c in item.choices:
                        final: dict[str, Any] = {
                            "index": c.index, "logprobs": None, "finish_reason": c.finish_reason or "stop",
                            "delta": {"refusal": c.moderation.refusal} if c.moderation else {},
                            **moderation_json(c.moderation)}
                        if c.reward is not None:
                            final["reward"] = c.reward
                        yield chunk([final])
                    if include_usage:
                        yield chunk([], usage=usage_json(item.prompt_tokens, item.completion_tokens))
        except ChatstackError as exc:
            if not sent:
                raise
            # then [DONE] below: clients wait for it to end the stream
            yield f"data: {json.dumps(domain_error_body(exc)[1])}\n\n"
        yield "data: [DONE]\n\n"
