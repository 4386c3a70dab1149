"""Concurrent fuzzing of the engine services: bursts of requests that share engine steps.

The per-request fuzz (test_fuzz_rpcs) sends one request at a time, so it never exercises what an
engine does with several requests in one step: chunked or batched prefills of long prompts, seeded
generators side by side, n > 1 fan-outs, penalties and logprobs in one sampling batch, aborts in
the middle of a prefill. A burst sends 2-12 such requests at once (asyncio over one channel) and
the oracle is the issue's: every call ends with a deliberate status (OK, or INVALID_ARGUMENT /
RESOURCE_EXHAUSTED for a request the service refuses, CANCELLED / DEADLINE_EXCEEDED for the ones
the fuzzer itself cut short), and after every burst the service is still SERVING.

Requests come from a seeded `random.Random`, so a profile is reproducible: `ci` (in `make test`)
runs a short fixed sequence, `long` (`make fuzz`) at least 2,000 requests per engine service.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatstack.safety.examples import UNSAFE_INPUTS, UNSAFE_OUTPUTS
from chatstack.safety.rules import CATEGORIES
from chatstack.v1 import (
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    reward_pb2,
    reward_pb2_grpc,
    safety_pb2,
    safety_pb2_grpc,
)
from tests.fuzz.domain import BAD_SCHEMAS, CONSTRAINT_REGEXES, GOOD_SCHEMAS, GRAMMARS

# Codes a call may end with: answered, refused for a reason the message names, or cut short by
# the fuzzer itself (cancel, short deadline). UNAVAILABLE, INTERNAL, UNKNOWN... mean a bug.
ALLOWED = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "CANCELLED", "DEADLINE_EXCEEDED"}
# A call cut short must not be cut short by anything else.
CUT_CODES = {"CANCELLED", "DEADLINE_EXCEEDED"}
WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "grandma", "story",
         "über", "日本語", "🙂", "\n", "  ", "recipe", "tell", "me")


@dataclass(frozen=True)
class EngineFacts:
    """What the requests are sized against (the services' GetModelInfo)."""

    max_model_len: int
    vocab_size: int
    max_n: int
    step_tokens: int = 2048  # vLLM's max_num_batched_tokens on CPU for these models


@dataclass
class BurstCall:
    """One request of a burst: how to send it and how the fuzzer may cut it short."""

    rpc: str
    describe: str
    send: Callable[[], Awaitable[None]]
    cut: str = ""  # "", "cancel-early", "cancel-late", "deadline"


@dataclass
class BurstBooks:
    """Status codes per service and the calls that broke an oracle."""

    codes: dict[str, Counter[str]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    bursts: Counter[str] = field(default_factory=Counter)

    def record(self, service: str, code: str) -> None:
        """Count one call."""
        self.codes.setdefault(service, Counter())[code] += 1

    def lines(self) -> list[str]:
        """The summary table."""
        out = ["chatstack engine bursts: status codes per service"]
        for service, counter in sorted(self.codes.items()):
            cells = " ".join(f"{c}={n}" for c, n in sorted(counter.items()))
            out.append(f"  {service:<11} requests={sum(counter.values())} bursts={self.bursts[service]} {cells}")
        out.append(f"{len(self.violations)} violations" + (":" if self.violations else ""))
        out += [f"  {v}" for v in self.violations[:50]]
        return out


BURST_BOOKS = BurstBooks()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _prompt_len(rng: random.Random, facts: EngineFacts, max_tokens: int) -> int:
    """Short, medium, about a step's budget, or right at the window's edge."""
    kind = rng.random()
    if kind < 0.3:
        return rng.randint(1, 32)
    if kind < 0.55:
        return rng.randint(200, 700)
    if kind < 0.8:
        return rng.randint(facts.step_tokens // 2 - 100, facts.step_tokens // 2 + 300)
    edge = facts.max_model_len - max_tokens
    return max(1, rng.randint(edge - 40, edge + 2))  # a few just past the window: INVALID_ARGUMENT


def sampling(rng: random.Random, facts: EngineFacts) -> generation_pb2.SamplingParams:
    """Sampling parameters that mix everything an engine step batches together."""
    p = generation_pb2.SamplingParams(max_tokens=rng.randint(1, 24), n=rng.choice((0, 1, 1, 2, 3, facts.max_n)))
    if rng.random() < 0.6:
        p.seed = rng.choice((0, 1, 7, 2**32, 2**63 - 1, 2**64 - 1, rng.randrange(2**64)))
    temperature = rng.choice((None, 0.0, 0.0, 0.7, 1.0, 1.5))
    if temperature is not None:
        p.temperature = temperature
    if rng.random() < 0.3:
        p.top_p = rng.choice((0.1, 0.5, 0.95, 1.0))
    if rng.random() < 0.3:
        p.top_k = rng.choice((-1, 1, 5, 50))
    if rng.random() < 0.2:
        p.min_p = rng.choice((0.0, 0.05, 0.5))
    if rng.random() < 0.3:
        p.presence_penalty, p.frequency_penalty = rng.uniform(-2, 2), rng.uniform(-2, 2)
    if rng.random() < 0.3:
        p.repetition_penalty = rng.choice((0.5, 1.0, 1.3, 2.0))
    if rng.random() < 0.35:
        p.logprobs = rng.choice((0, 1, 5, 20))
    if rng.random() < 0.3:
        p.stop.extend(rng.sample(("the", "\n", "a", ".", "日本", "xyz"), rng.randint(1, 3)))
    if rng.random() < 0.2:
        p.stop_token_ids.extend(rng.sample(range(facts.vocab_size), 3))
    if rng.random() < 0.3:
        p.min_tokens = rng.randint(0, p.max_tokens + 2)  # above max_tokens: INVALID_ARGUMENT
    if rng.random() < 0.2:
        p.ignore_eos = True
    if rng.random() < 0.3:  # constrained decoding batched with free requests: it must not kill the engine
        p.constraint.CopyFrom(constraint(rng))
    return p


def constraint(rng: random.Random) -> common_pb2.OutputConstraint:
    """A structured-output constraint, most of them valid, some refused before admission."""
    kind = rng.choice(("json_schema", "json_schema", "regex", "grammar", "choice", "json_object"))
    if kind == "json_schema":
        return common_pb2.OutputConstraint(json_schema=rng.choice(GOOD_SCHEMAS * 3 + BAD_SCHEMAS))
    if kind == "regex":
        return common_pb2.OutputConstraint(regex=rng.choice(CONSTRAINT_REGEXES))
    if kind == "grammar":
        return common_pb2.OutputConstraint(grammar=rng.choice(GRAMMARS))
    if kind == "choice":
        return common_pb2.OutputConstraint(choice=common_pb2.OutputConstraint.Choices(
            values=rng.sample(("red", "green", "blue", "日本", ""), rng.randint(0, 3))))
    return common_pb2.OutputConstraint(json_object=rng.random() < 0.9)


UNSAFE_TEXTS = tuple("\n".join(e.texts) for e in (*UNSAFE_INPUTS, *UNSAFE_OUTPUTS))

class EngineBurstFuzzer:
    """Bursts of concurrent requests to one engine service (see module docstring)."""

    def __init__(self, service: str, address: str, facts: EngineFacts, seed: int,
                 books: BurstBooks = BURST_BOOKS, deadline: float = 60.0) -> None:
        self.service, self.address, self.facts = service, address, facts
        self.rng = random.Random(seed)
        self.books = books
        self.deadline = deadline
        self.channel = grpc.aio.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.generation = generation_pb2_grpc.GenerationServiceStub(self.channel)
        self.reward = reward_pb2_grpc.RewardServiceStub(self.channel)
        self.safety = safety_pb2_grpc.SafetyServiceStub(self.channel)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    # -- requests ---------------------------------------------------------------------------
    def _cut(self) -> str:
        r = self.rng.random()
        return "" if r < 0.75 else "cancel-early" if r < 0.85 else "cancel-late" if r < 0.93 else "deadline"

    def _timeout(self, cut: str) -> float:
        return self.rng.uniform(0.01, 0.5) if cut == "deadline" else self.deadline

    def generation_call(self) -> BurstCall:
        """A Generate or GenerateStream with a prompt sized to share steps with the others."""
        rng, facts = self.rng, self.facts
        params = sampling(rng, facts)
        length = _prompt_len(rng, facts, params.max_tokens)
        if rng.random() < 0.8:
            ids = [rng.randrange(3, facts.vocab_size) for _ in range(length)]
            prompt: dict[str, object] = {"token_ids": common_pb2.TokenIds(ids=ids)}
        else:
            prompt = {"text": _text(rng, max(1, length // 2))}
        cut, streamed = self._cut(), rng.random() < 0.6
        timeout = self._timeout(cut)
        describe = (f"{'GenerateStream' if streamed else 'Generate'} prompt={length} n={params.n} "
                    f"seed={params.seed if params.HasField('seed') else '-'} max_tokens={params.max_tokens} cut={cut or '-'}")
        if streamed:
            request = generation_pb2.GenerateStreamRequest(sampling=params, **prompt)  # type: ignore[arg-type]

            async def send() -> None:
                call = self.generation.GenerateStream(request, timeout=timeout)
                await _consume(call, cut, rng.uniform(0.0, 0.2))
            return BurstCall("GenerateStream", describe, send, cut)
        unary = generation_pb2.GenerateRequest(sampling=params, **prompt)  # type: ignore[arg-type]

        async def send_unary() -> None:
            await _unary(self.generation.Generate(unary, timeout=timeout), cut, rng.uniform(0.0, 0.2))
        return BurstCall("Generate", describe, send_unary, cut)

    def _conversation(self, turns: int, words: int) -> list[common_pb2.ChatMessage]:
        roles = (common_pb2.ROLE_USER, common_pb2.ROLE_ASSISTANT)
        out = [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=_text(self.rng, 5))] \
            if self.rng.random() < 0.3 else []
        out += [common_pb2.ChatMessage(role=roles[i % 2], content=_text(self.rng, words)) for i in range(turns)]
        return out

    def reward_call(self) -> BurstCall:
        """A Score, ScoreBatch or Rank; long conversations reach the reward model's window."""
        rng = self.rng
        words = rng.choice((3, 40, 150, 400))
        cut = self._cut()
        timeout = self._timeout(cut)
        kind = rng.random()
        truncation = rng.choice((reward_pb2.TRUNCATION_UNSPECIFIED, reward_pb2.TRUNCATION_AUTO))
        if kind < 0.4:
            score = reward_pb2.ScoreRequest(item=reward_pb2.ScoreItem(
                conversation=self._conversation(1 + 2 * rng.randint(0, 2), words), response=_text(rng, words)),
                truncation=truncation)

            async def send_score() -> None:
                await _unary(self.reward.Score(score, timeout=timeout), cut, rng.uniform(0, 0.1))
            return BurstCall("Score", f"Score words={words} cut={cut or '-'}", send_score, cut)
        if kind < 0.7:
            items = [reward_pb2.ScoreItem(conversation=self._conversation(1, words), response=_text(rng, words))
                     for _ in range(rng.choice((1, 4, 16, 64, 65)))]
            batch = reward_pb2.ScoreBatchRequest(items=items, truncation=truncation)

            async def send_batch() -> None:
                await _unary(self.reward.ScoreBatch(batch, timeout=timeout), cut, rng.uniform(0, 0.1))
            return BurstCall("ScoreBatch", f"ScoreBatch items={len(items)} words={words} cut={cut or '-'}",
                             send_batch, cut)
        rank = reward_pb2.RankRequest(conversation=self._conversation(1, words),
                                      candidates=[_text(rng, words) for _ in range(rng.choice((1, 2, 4, 8, 9)))],
                                      truncation=truncation)

        async def send_rank() -> None:
            await _unary(self.reward.Rank(rank, timeout=timeout), cut, rng.uniform(0, 0.1))
        return BurstCall("Rank", f"Rank candidates={len(rank.candidates)} words={words} cut={cut or '-'}",
                         send_rank, cut)

    def safety_call(self) -> BurstCall:
        """A Check of 1-65 items: texts from a few words to past the guard's window (read in
        windows), conversations, the unsafe fixtures, odd policies."""
        rng = self.rng
        words = rng.choice((3, 40, 150, 400, 1500))
        cut = self._cut()
        timeout = self._timeout(cut)
        items = []
        for _ in range(rng.choice((1, 2, 8, 64, 65))):
            if rng.random() < 0.3:
                items.append(safety_pb2.CheckItem(conversation=safety_pb2.CheckConversation(
                    messages=self._conversation(1 + 2 * rng.randint(0, 3), words))))
            elif rng.random() < 0.3:
                items.append(safety_pb2.CheckItem(text=rng.choice(UNSAFE_TEXTS)))
            else:
                items.append(safety_pb2.CheckItem(text=_text(rng, words)))
        policy = safety_pb2.CheckPolicy(
            categories=rng.sample(CATEGORIES, rng.randint(0, 2)),
            thresholds={c: rng.choice((0.5, 1.0, 0.0, 1e-9)) for c in rng.sample(CATEGORIES, rng.randint(0, 2))})
        check = safety_pb2.CheckRequest(items=items, policy=policy)

        async def send_check() -> None:
            await _unary(self.safety.Check(check, timeout=timeout), cut, rng.uniform(0, 0.1))
        return BurstCall("Check", f"Check items={len(items)} words={words} cut={cut or '-'}", send_check, cut)

    # -- running ----------------------------------------------------------------------------
    async def burst(self, size: int) -> None:
        """Send `size` calls at once; record each code; check the service is still SERVING."""
        make = {"generation": self.generation_call, "reward": self.reward_call,
                "safety": self.safety_call}[self.service]
        calls = [make() for _ in range(size)]
        codes = await asyncio.gather(*(_run(call) for call in calls))
        self.books.bursts[self.service] += 1
        for call, code in zip(calls, codes, strict=True):
            self.books.record(self.service, code)
            if code not in ALLOWED or (code in CUT_CODES and not call.cut):
                self.books.violations.append(f"{self.service}: {code} from {call.describe}")
        if not await self.serving():
            described = "; ".join(c.describe for c in calls)
            self.books.violations.append(f"{self.service}: not SERVING after the burst [{described}]")
            raise AssertionError(f"{self.service} stopped serving after a burst: {described}")

    async def serving(self, within: float = 30.0) -> bool:
        """SERVING within `within` seconds (a busy engine may answer health late, never NOT_SERVING)."""
        try:
            reply = await self.health.Check(health_pb2.HealthCheckRequest(), timeout=within)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def run(self, requests: int, max_burst: int = 12) -> None:
        """Bursts of 2..max_burst calls until `requests` calls were sent."""
        sent = 0
        while sent < requests:
            size = min(requests - sent, self.rng.randint(2, max_burst))
            await self.burst(size)
            sent += size


async def _run(call: BurstCall) -> str:
    try:
        await call.send()
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    except asyncio.CancelledError:
        return "CANCELLED"
    return "OK"


async def _unary(call: grpc.aio.UnaryUnaryCall, cut: str, after: float) -> None:  # type: ignore[type-arg]
    if cut == "cancel-early":  # before it is sent: a unary call's send is its whole invocation
        call.cancel()
    elif cut == "cancel-late":  # cut short if it has not finished within `after` seconds
        done, _ = await asyncio.wait({asyncio.ensure_future(call.code())}, timeout=after)
        if not done:
            call.cancel()
    await call


async def _consume(call: grpc.aio.UnaryStreamCall, cut: str, after: float) -> None:  # type: ignore[type-arg]
    started = time.monotonic()
    if cut == "cancel-early":
        await call.wait_for_connection()  # the request is sent: the engine is in the prefill
        call.cancel()
    async for _ in call:
        if cut == "cancel-late" and time.monotonic() - started >= after:
            call.cancel()
