"""Building the prompt the model sees: a session's context window, cut to the budget and to the
generator's length on the exact rendered token count.

The session service answers GetContext with the newest whole turns that fit a budget; the
gateway appends the message being answered, keeps the newest turns that fit with it, and renders
them with the tokenizer service's chat template. The same tokenizer call counts the new message
(and a new session's system prompt), so no separate count precedes it. While the rendering plus
max_tokens exceeds the model's length, or the counts exceed the budget, more of the oldest turns
are dropped and the rest rendered again (only when the window is tight).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from chatstack.core.errors import InvalidRequest
from chatstack.core.roles import ASSISTANT, SYSTEM, USER
from chatstack.gateway.clients import GenerationClient, SessionClient, TokenizerClient
from chatstack.gateway.context_window import newest_that_fit, turns_to_drop
from chatstack.gateway.plan import Plan
from chatstack.gateway.session_records import AnswerMeta, Message
from chatstack.session.model import Turn


@dataclass
class ChatContext:
    """A session's context as read (system prompt and newest turns, oldest first), plus the
    turns being answered on top once they are appended (a user's message, or tools' results),
    not counted yet (`tokens` None)."""

    system_prompt: str
    system_tokens: int | None  # None: not counted yet (a new session's)
    version: int
    omitted: int = 0  # older turns the read already left out
    messages: list[Message] = field(default_factory=list)
    tokens: list[int | None] = field(default_factory=list)  # None: not counted yet (the new turns)
    turn_ids: list[str] = field(default_factory=list)

    def append(self, message: Message, tokens: int | None, turn_id: str = "") -> None:
        """Add a turn on top."""
        self.messages.append(message)
        self.tokens.append(tokens)
        self.turn_ids.append(turn_id)

    def drop_top(self) -> None:
        """Remove the top turn (the answer a regenerate replaces)."""
        for column in (self.messages, self.tokens, self.turn_ids):
            column.pop()

    @property
    def answering(self) -> int:
        """How many turns on top are being answered: the new ones (not counted yet), or the top
        one (a regenerate answers a stored turn). Always kept in the prompt."""
        new = 0
        while new < len(self.tokens) and self.tokens[-1 - new] is None:
            new += 1
        return max(1, new)


@dataclass(frozen=True)
class Prompt:
    """The rendered context sent to the model, with the counts the rendering call made."""

    messages: list[Message]
    text: str
    ids: list[int]
    context_turns: int
    truncated: bool
    new_tokens: list[int]  # tokens of each turn being answered
    system_tokens: int  # tokens of the system prompt (0 without one)


def too_long(limit: int, max_tokens: int) -> str:
    """The message of a prompt that cannot fit even with only the message being answered."""
    return (f"message: does not fit the context window ({limit} tokens) with max_tokens "
            f"{max_tokens}; shorten it or lower max_tokens")


class PromptBuilder:
    """Context windows and rendered prompts (see module docstring)."""

    def __init__(self, tokenizer: TokenizerClient, generation: GenerationClient) -> None:
        self.tokenizer = tokenizer
        self.generation = generation
        self._overhead: tuple[int, int] | None = None  # (fixed, per message)

    async def template_overhead(self) -> tuple[int, int]:
        """Tokens the chat template adds: fixed (BOS, generation prompt) and per message (asked once)."""
        if self._overhead is None:
            def msgs(n: int) -> list[Message]:
                return [Message(USER if i % 2 == 0 else ASSISTANT, "x") for i in range(n)]
            one = await self.tokenizer.render(msgs(1), count=[0])
            three = await self.tokenizer.render(msgs(3))
            x = one.counts[0]
            per_message = max(0, (len(three.ids) - len(one.ids)) // 2 - x)
            self._overhead = (max(0, len(one.ids) - x - per_message), per_message)
        return self._overhead

    async def budget(self, plan: Plan) -> int:
        """Tokens of context (system prompt + turns) the prompt may hold; a larger budget than the
        model's window could never be used, so it is clamped to it."""
        fixed, _ = await self.template_overhead()
        limit = await self.generation.max_model_len()
        window = limit - plan.max_tokens - fixed
        budget = min(plan.options.context_token_budget or window, window)
        if budget <= 0:
            raise InvalidRequest(too_long(limit, plan.max_tokens))
        return budget

    @staticmethod
    async def read(sessions: SessionClient, session_id: str, budget: int,
                   keep_top_exchange: bool = False) -> ChatContext:
        """The newest turns that fit `budget` (GetContext), as a ChatContext, without the
        exchanges the safety stage stopped (the model never sees them again), except the top one
        when `keep_top_exchange` (a regenerate answers it again)."""
        reply = await sessions.context(session_id, budget)
        ctx = ChatContext(reply.system_prompt, reply.system_prompt_tokens, reply.version, reply.omitted_turns)
        for turn in without_stopped_exchanges(reply.turns, keep_top_exchange):
            ctx.append(Message(turn.role, turn.content, turn.tool_calls, turn.tool_call_id), turn.token_count,
                       turn.turn_id)
        return ctx

    async def fit_and_render(self, ctx: ChatContext, budget: int, plan: Plan) -> Prompt:
        """Keep the newest turns (the last, the one being answered, always) that fit the budget,
        render them, counting what `ctx` has not counted yet in the same call; while the counts
        exceed the budget or the rendered prompt plus max_tokens exceeds the model's length, drop
        more of the oldest turns and render again: by the estimate, and at least one turn per
        round, so a conversation of any length converges on the exact rendered count. The plan's
        tools are rendered with them."""
        limit, max_tokens = await self.generation.max_model_len(), plan.max_tokens
        tools = plan.options.tools.tools if plan.options.tools else ()
        _, per_message = await self.template_overhead()
        system = [Message(SYSTEM, ctx.system_prompt)] if ctx.system_prompt else []
        if not system:
            ctx.system_tokens = 0
        new = ctx.answering
        older = ctx.tokens[:-new]
        first = len(older) - newest_that_fit(
            [t or 0 for t in older],
            budget - (ctx.system_tokens or 0) - sum(t or 0 for t in ctx.tokens[-new:]))
        while True:
            messages = system + ctx.messages[first:]
            offset = len(system) - first  # a turn's index in `messages`: its index in ctx + offset
            uncounted = [i + offset for i in range(first, len(ctx.tokens)) if ctx.tokens[i] is None] + \
                ([0] if ctx.system_tokens is None else [])
            rendering = await self.tokenizer.render(messages, count=uncounted, tools=tools)
            for index, tokens in zip(uncounted, rendering.counts, strict=True):
                if index == 0 and system:
                    ctx.system_tokens = tokens
                else:
                    ctx.tokens[index - offset] = tokens
            kept = [t or 0 for t in ctx.tokens[first:]]
            over_budget = (ctx.system_tokens or 0) + sum(kept) - budget
            excess = len(rendering.ids) + max_tokens - limit
            if excess <= 0 and over_budget <= 0:
                return Prompt(messages, rendering.text, rendering.ids, len(kept), ctx.omitted + first > 0,
                              kept[-new:], ctx.system_tokens or 0)
            if len(kept) == new:
                break  # only the turns being answered are left, and they do not fit
            drop = max(_to_drop(kept[:-new], over_budget, 0), _to_drop(kept[:-new], excess, per_message))
            first += max(1, drop)
        raise InvalidRequest(too_long(limit, max_tokens))


def without_stopped_exchanges(turns: Sequence[Turn], keep_top: bool = False) -> list[Turn]:
    """`turns` (oldest first) without each exchange whose answer the safety stage stopped: that
    assistant turn and the user or tool turns it answered. The top exchange stays when `keep_top`."""
    kept: list[Turn] = []
    dropping, top = False, True
    for turn in reversed(turns):  # newest first: an answer comes before the turns it answered
        if turn.role == ASSISTANT:
            dropping = bool(AnswerMeta.decode(turn.metadata).moderation) and not (keep_top and top)
            top = False
        if not dropping:
            kept.append(turn)
    return kept[::-1]


def _to_drop(older: list[int], excess: int, per_message: int) -> int:
    """How many of the oldest turns free `excess` tokens (all of them if that is not enough)."""
    drop = turns_to_drop(older, excess, per_message)
    return len(older) if drop is None else drop
