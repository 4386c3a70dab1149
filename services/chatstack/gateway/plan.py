"""A request's plan: its options resolved once, against the gateway's limits, into what the answer
stage does. Both front doors build one (gRPC Chat from `ChatOptions` messages, HTTP from OpenAI
bodies) and hand it to the flows, so a rule lives here once and both doors answer alike:

- `max_tokens`: the caller's, or the gateway's default; over the limit is refused;
- `n` answers are returned; `best_of` (>= n) candidates are generated and ranked by the reward
  model, the best `n` returned, each with its reward;
- greedy decoding (temperature 0) has one answer: n or best_of greedy candidates would be copies
  of it, so it is generated once, scored if best_of asked for rewards, and given n times;
- a single answer is scored as the door says (`scoring`): the gateway's `single_answer_scoring`
  for a stored exchange, never for a stateless one (nothing to store a score in), always when the
  caller asked for best_of.

A limit's message names the caller's own field (`OptionFields`: `options.max_tokens` on gRPC,
`max_tokens` or `max_output_tokens` over HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from chatstack.core.errors import InvalidRequest
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.model import ChatOptions
from chatstack.gateway.tool_parsers import ToolCallParser
from chatstack.gateway.tool_use import ToolFields

Scoring = Literal["sync", "async", "off"]


GRPC_TOOL_FIELDS = ToolFields()


@dataclass(frozen=True)
class OptionFields:
    """The caller's names of the options a plan checks (each door names them its own way)."""

    max_tokens: str = "options.max_tokens"
    best_of: str = "options.best_of"
    n: str = "n"
    constraint: str = "options.constraint"  # the backend names sampling.constraint.<kind>: renamed to this
    tools: ToolFields = GRPC_TOOL_FIELDS


GRPC_FIELDS = OptionFields()
CHAT_COMPLETIONS_FIELDS = OptionFields(
    max_tokens="max_tokens", best_of="best_of",
    tools=ToolFields("tools", "tools[{i}].function", "parameters", "tool_choice", "response_format"))
RESPONSES_FIELDS = OptionFields(
    max_tokens="max_output_tokens", best_of="best_of",
    tools=ToolFields("tools", "tools[{i}]", "parameters", "tool_choice", "text.format"))


@dataclass(frozen=True)
class Plan:
    """What the answer stage does for one request (see module docstring). `options` keeps the
    sampling details the plan passes through unchanged (top_p, top_k, seed, stop, penalties,
    logprobs) and the context options (budget, truncation, echo)."""

    options: ChatOptions
    max_tokens: int
    temperature: float
    n: int = 1
    best_of: int = 1
    scoring: Scoring = "sync"
    constraint_field: str = "options.constraint"  # the caller's name of options.constraint
    tool_format: str = "hermes"  # the model's tool-call format (auto tool choice)

    def tool_parser(self) -> ToolCallParser | None:
        """A parser of one answer's tool calls, or None when none are read back."""
        tools = self.options.tools
        return tools.parser(self.tool_format) if tools else None

    @property
    def greedy(self) -> bool:
        """Temperature 0: one answer, whatever n and best_of say."""
        return self.temperature == 0

    @property
    def ranked(self) -> bool:
        """Whether several candidates are generated and ranked by the reward model."""
        return self.best_of > 1 and not self.greedy

    @property
    def candidates(self) -> int:
        """Answers asked of the engine."""
        if self.greedy:
            return 1
        return self.best_of if self.ranked else self.n

    @property
    def streams(self) -> bool:
        """Whether the answer streams as it is generated (one answer, nothing to rank)."""
        return self.candidates == 1 and self.n == 1


class Planner:
    """Resolves options into plans against one gateway's limits."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    def plan(self, options: ChatOptions, fields: OptionFields = GRPC_FIELDS, stateless: bool = False) -> Plan:
        """The plan of `options`, or InvalidRequest naming the caller's field that breaks a limit.
        `stateless`: nothing is stored, so a single answer is scored only if best_of asks."""
        c = self.config
        max_tokens = options.max_tokens or c.default_max_tokens
        if max_tokens > c.max_tokens_limit:
            raise InvalidRequest(f"{fields.max_tokens}: {max_tokens} exceeds the limit of "
                                 f"{c.max_tokens_limit}")
        n, best_of = max(1, options.n), max(1, options.best_of)
        if n > c.max_best_of:
            raise InvalidRequest(f"{fields.n}: {n} exceeds the limit of {c.max_best_of}")
        if best_of > c.max_best_of:
            raise InvalidRequest(f"{fields.best_of}: {best_of} exceeds the limit of {c.max_best_of}")
        if best_of > 1 and best_of < n:
            raise InvalidRequest(f"{fields.best_of}: {best_of} is less than n ({n})")
        scoring: Scoring = "sync" if best_of > 1 else "off" if stateless else c.single_answer_scoring
        temperature = c.default_temperature if options.temperature is None else options.temperature
        constraint_field = fields.constraint
        if options.tools:
            options.tools.check(fields.tools, c.max_tools, options.constraint is not None)
            constraint = options.tools.constraint()
            if constraint is not None:
                options, constraint_field = replace(options, constraint=constraint), fields.tools.tools
        return Plan(options, max_tokens, temperature, n, best_of, scoring, constraint_field,
                    c.tool_call_parser)
