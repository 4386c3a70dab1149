"""Building the prompt the model sees: a session's context window, cut to the generator's length
on the exact rendered token count.

The session service answers GetContext with the newest whole turns that fit a budget; the
gateway appends the message being answered, keeps the newest turns that fit with it, renders them
with the tokenizer service's chat template, and drops more of the oldest turns while the rendering
plus max_tokens is still too long (template tokens; stored counts that differ from a rendering).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatstack.core.errors import InvalidRequest
from chatstack.gateway.clients import GenerationClient, SessionClient, TokenizerClient
from chatstack.gateway.context_window import newest_that_fit, turns_to_drop
from chatstack.gateway.model import ChatOptions
from chatstack.v1 import common_pb2


@dataclass
class ChatContext:
    """A session's context as read (system prompt and newest turns, oldest first), plus the
    message being answered as the last turn once it is appended."""

    system_prompt: str
    system_tokens: int
    version: int
    omitted: int = 0  # older turns the read already left out
    messages: list[common_pb2.ChatMessage] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    turn_ids: list[str] = field(default_factory=list)

    def append(self, role: int, content: str, tokens: int, turn_id: str = "") -> None:
        """Add a turn on top."""
        self.messages.append(common_pb2.ChatMessage(role=role, content=content))  # type: ignore[arg-type]
        self.tokens.append(tokens)
        self.turn_ids.append(turn_id)

    def drop_top(self) -> None:
        """Remove the top turn (the answer a regenerate replaces)."""
        for column in (self.messages, self.tokens, self.turn_ids):
            column.pop()


@dataclass(frozen=True)
class Prompt:
    """The rendered context sent to the model."""

    messages: list[common_pb2.ChatMessage]
    text: str
    ids: list[int]
    context_turns: int
    truncated: bool


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
            def msgs(n: int) -> list[common_pb2.ChatMessage]:
                return [common_pb2.ChatMessage(role=common_pb2.ROLE_USER if i % 2 == 0 else
                                               common_pb2.ROLE_ASSISTANT, content="x") for i in range(n)]
            one = await self.tokenizer.render(msgs(1))
            three = await self.tokenizer.render(msgs(3))
            x = (await self.tokenizer.count(["x"]))[0]
            per_message = max(0, (len(three[1]) - len(one[1])) // 2 - x)
            self._overhead = (max(0, len(one[1]) - x - per_message), per_message)
        return self._overhead

    async def budget(self, max_tokens: int, options: ChatOptions) -> int:
        """Tokens of context (system prompt + turns) the prompt may hold; a larger budget than the
        model's window could never be used, so it is clamped to it."""
        fixed, _ = await self.template_overhead()
        limit = await self.generation.max_model_len()
        window = limit - max_tokens - fixed
        budget = min(options.context_token_budget or window, window)
        if budget <= 0:
            raise InvalidRequest(too_long(limit, max_tokens))
        return budget

    @staticmethod
    async def read(sessions: SessionClient, session_id: str, budget: int) -> ChatContext:
        """The newest turns that fit `budget` (GetContext), as a ChatContext."""
        reply = await sessions.context(session_id, budget)
        ctx = ChatContext(reply.system_prompt, reply.system_prompt_tokens, reply.version, reply.omitted_turns)
        for turn in reply.turns:
            ctx.append(turn.role, turn.content, turn.token_count, turn.turn_id)
        return ctx

    async def fit_and_render(self, ctx: ChatContext, budget: int, max_tokens: int) -> Prompt:
        """Keep the newest turns (the last, the one being answered, always) that fit the budget,
        render them; while the rendered prompt plus max_tokens still exceeds the model's length,
        drop more of the oldest turns and render again: by the estimate, and at least one turn
        per round, so a conversation of any length converges on the exact rendered count."""
        limit = await self.generation.max_model_len()
        _, per_message = await self.template_overhead()
        first = len(ctx.tokens) - newest_that_fit(ctx.tokens, budget - ctx.system_tokens)
        system = [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=ctx.system_prompt)] \
            if ctx.system_prompt else []
        while first < len(ctx.tokens):  # the message being answered always stays
            messages = system + ctx.messages[first:]
            text, ids = await self.tokenizer.render(messages)
            excess = len(ids) + max_tokens - limit
            if excess <= 0:
                return Prompt(messages, text, ids, len(ctx.tokens) - first, ctx.omitted + first > 0)
            if first == len(ctx.tokens) - 1:
                break  # only the message being answered is left, and it does not fit
            drop = turns_to_drop(ctx.tokens[first:-1], excess, per_message)
            first += max(1, drop if drop is not None else len(ctx.tokens) - 1 - first)
        raise InvalidRequest(too_long(limit, max_tokens))
