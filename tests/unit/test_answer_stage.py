"""The request plan, the answer stage, stateless completions, the prompt's drop loop, preference
capture and the gRPC servicer, each alone over fakes of the backend transport (the real stack runs
the same classes in tests/integration/test_answer_parity.py and test_openai_api.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest

from chatstack.core.errors import InvalidRequest, Unauthenticated
from chatstack.core.roles import TOOL, USER
from chatstack.gateway.answering import Answerer, PromptIds
from chatstack.gateway.auth import ApiKeyAuthenticator, hash_key
from chatstack.gateway.clients import Backends, Transport
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.flows import GatewayFlows
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import Answer, ChatOptions, DeltaEvent
from chatstack.gateway.plan import CHAT_COMPLETIONS_FIELDS, GRPC_FIELDS, RESPONSES_FIELDS, Planner
from chatstack.gateway.prompting import ChatContext, PromptBuilder
from chatstack.gateway.safety_stage import SafetyStage
from chatstack.gateway.servicer import ChatServicer
from chatstack.gateway.session_records import Message
from chatstack.gateway.stage_clock import StageClock
from chatstack.v1 import chat_pb2, common_pb2, generation_pb2, reward_pb2, session_pb2
from tests.unit.test_dataplane_rollback import FakeDownstream

CONFIG = GatewayConfig(max_best_of=4, max_tokens_limit=64, default_max_tokens=16, default_temperature=1.0)


class FakeBackends(FakeDownstream):
    """FakeDownstream plus a generator of n candidates ("c0", "c1", ...) and a reward model that
    scores a candidate by its number; records the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.generation.Generate = self._generate  # type: ignore[attr-defined]
        self.reward = type("Reward", (), {"Rank": self._rank, "Score": self._score})()
        self.preferences: list[Any] = []
        self.session.RecordPreference = self._record  # type: ignore[attr-defined]

    async def call(self, service: str, method: str, request: Any, owner: str | None = None,
                   timeout: float | None = None, route_key: str | None = None) -> Any:  # noqa: ASYNC109
        self.calls.append(method)
        return await super().call(service, method, request, owner, timeout, route_key)

    async def generate_stream(self, request: generation_pb2.GenerateStreamRequest, route_key: str | None = None
                              ) -> AsyncGenerator[generation_pb2.GenerateStreamResponse]:
        self.calls.append("GenerateStream")
        async for message in super().generate_stream(request, route_key):
            yield message

    async def _generate(self, request: generation_pb2.GenerateRequest) -> generation_pb2.GenerateResponse:
        n = request.sampling.n
        return generation_pb2.GenerateResponse(
            choices=[generation_pb2.Choice(index=i, text=f"c{i}", token_ids=[i], finish_reason=1) for i in range(n)],
            usage=common_pb2.TokenUsage(completion_tokens=n))

    async def _rank(self, request: reward_pb2.RankRequest) -> reward_pb2.RankResponse:
        scored = sorted(((float(t[1:]), i) for i, t in enumerate(request.candidates)), reverse=True)
        return reward_pb2.RankResponse(ranked=[reward_pb2.RankedCandidate(index=i, score=s) for s, i in scored])

    async def _score(self, request: reward_pb2.ScoreRequest) -> reward_pb2.ScoreResponse:
        return reward_pb2.ScoreResponse(score=0.5)

    async def _record(self, request: session_pb2.RecordPreferenceRequest) -> session_pb2.RecordPreferenceResponse:
        self.preferences.append(request.event)
        return session_pb2.RecordPreferenceResponse(event_id="e1")


def transport(fake: FakeBackends) -> Transport:
    return fake  # a Transport by its methods: call, generate_stream, close


async def answer_events(plan_options: ChatOptions, stateless: bool = False) -> tuple[list[Any], StageClock, list[str]]:
    fake = FakeBackends()
    backends = Backends(transport(fake))
    metrics = GatewayMetrics()
    answerer = Answerer(backends.generation, backends.reward, metrics, SafetyStage(None, CONFIG, metrics))
    plan = Planner(CONFIG).plan(plan_options, stateless=stateless)
    clock = StageClock()
    events = [e async for e in answerer.answer(PromptIds([1, 2, 3], []), plan, clock)]
    return events, clock, fake.calls


# -- the plan ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "named"), [(GRPC_FIELDS, "options.max_tokens"),
                                               (CHAT_COMPLETIONS_FIELDS, "max_tokens"),
                                               (RESPONSES_FIELDS, "max_output_tokens")])
def test_a_limit_names_the_field_of_the_callers_door(fields: Any, named: str) -> None:
    with pytest.raises(InvalidRequest, match=rf"^{named}: 65 exceeds the limit of 64"):
        Planner(CONFIG).plan(ChatOptions(max_tokens=65), fields)


def test_the_plan_resolves_n_best_of_and_greedy_once() -> None:
    planner = Planner(CONFIG)
    with pytest.raises(InvalidRequest, match=r"^best_of: 2 is less than n"):
        planner.plan(ChatOptions(n=3, best_of=2), CHAT_COMPLETIONS_FIELDS)
    with pytest.raises(InvalidRequest, match=r"^n: 5 exceeds"):
        planner.plan(ChatOptions(n=5), CHAT_COMPLETIONS_FIELDS)
    ranked = planner.plan(ChatOptions(best_of=3, n=2))
    assert (ranked.ranked, ranked.candidates, ranked.streams, ranked.max_tokens) == (True, 3, False, CONFIG.default_max_tokens)
    greedy = planner.plan(ChatOptions(best_of=4, n=2, temperature=0.0))
    assert (greedy.ranked, greedy.candidates, greedy.streams, greedy.scoring) == (False, 1, False, "sync")
    assert planner.plan(ChatOptions(temperature=0.0, best_of=4)).streams
    assert planner.plan(ChatOptions(), stateless=True).scoring == "off"
    assert planner.plan(ChatOptions()).scoring == CONFIG.single_answer_scoring


# -- the answer stage ----------------------------------------------------------------------------
async def test_one_answer_streams_its_deltas_then_the_scored_answer() -> None:
    events, clock, calls = await answer_events(ChatOptions(max_tokens=8))
    assert [type(e).__name__ for e in events] == ["DeltaEvent", "Answer"]
    answer = events[-1]
    assert answer.best.text == "hi" and answer.reward_score == 0.5 and answer.reward_status == "scored"
    assert calls == ["GenerateStream", "Score"] and {"ttft", "generation", "reward"} <= set(clock.seconds)


async def test_best_of_ranks_the_candidates_and_returns_the_best_n_best_first() -> None:
    events, _, calls = await answer_events(ChatOptions(max_tokens=8, best_of=4, n=2))
    deltas, answer = events[:-1], events[-1]
    assert [(c.index, c.text, c.reward) for c in answer.choices] == [(0, "c3", 3.0), (1, "c2", 2.0)]
    assert [(d.index, d.text) for d in deltas] == [(0, "c3"), (1, "c2")]  # whole, after the ranking
    assert [(c.index, c.chosen) for c in answer.candidates] == [(0, False), (1, False), (2, False), (3, True)]
    assert calls == ["Generate", "Rank"] and answer.completion_tokens == 4


async def test_a_greedy_answer_is_generated_once_and_given_n_times() -> None:
    events, _, calls = await answer_events(ChatOptions(max_tokens=8, best_of=4, n=3, temperature=0.0),
                                           stateless=True)
    answer = events[-1]
    assert calls == ["Generate", "Score"]  # one candidate; scored because best_of asked for rewards
    assert [(c.index, c.text, c.reward) for c in answer.choices] == [(i, "c0", 0.5) for i in range(3)]


async def test_a_stateless_single_answer_is_not_scored() -> None:
    events, clock, calls = await answer_events(ChatOptions(max_tokens=8), stateless=True)
    assert calls == ["GenerateStream"] and events[-1].best.reward is None and "reward" not in clock.seconds


# -- stateless completions: the event order ------------------------------------------------------
async def test_completions_render_then_answer_and_record_every_stage() -> None:
    fake, metrics = FakeBackends(), GatewayMetrics()
    flows = GatewayFlows.build(CONFIG, Backends(transport(fake)), metrics)
    messages = [Message(USER, "hello there")]
    plan = Planner(CONFIG).plan(ChatOptions(max_tokens=8), CHAT_COMPLETIONS_FIELDS, stateless=True)
    events = [e async for e in flows.completions.complete(messages, plan)]
    assert [type(e) for e in events] == [DeltaEvent, Answer]
    assert fake.calls == ["ApplyChatTemplate", "GetModelInfo", "GenerateStream"]
    observed = {s.labels["stage"] for m in metrics.stage.collect() for s in m.samples if s.name.endswith("_count")}
    assert observed == {"template", "ttft", "generation", "total"}
    with pytest.raises(InvalidRequest, match=r"^messages: empty"):
        [e async for e in flows.completions.complete([], plan)]


# -- the prompt's drop loop ----------------------------------------------------------------------
async def test_fit_and_render_drops_the_oldest_turns_until_the_prompt_fits() -> None:
    EIGHT = Planner(CONFIG).plan(ChatOptions(max_tokens=8))
    fake = FakeBackends()
    backends = Backends(transport(fake))
    prompts = PromptBuilder(backends.tokenizer, backends.generation)
    ctx = ChatContext("sys", 1, 1)
    for i in range(10):
        ctx.append(Message(USER, " ".join(["w"] * 10)), 10, f"t{i}")
    ctx.append(Message(USER, "the question"), None)
    prompt = await prompts.fit_and_render(ctx, budget=35, plan=EIGHT)  # by the counts: 1 + 3 x 10 + 2
    assert prompt.truncated and prompt.context_turns == 4 and prompt.new_tokens == [2]
    assert [m.content for m in prompt.messages][-1] == "the question" and prompt.messages[0].content == "sys"
    fake.generation.GetModelInfo = _short_model  # type: ignore[attr-defined]
    short = PromptBuilder(backends.tokenizer, Backends(transport(fake)).generation)
    prompt = await short.fit_and_render(ctx, budget=35, plan=EIGHT)  # by the rendered length: 40 tokens
    assert prompt.context_turns == 3 and len(prompt.ids) + 8 <= 40
    whole = ChatContext("", 0, 1)
    whole.append(Message(USER, "short"), None)
    assert not (await prompts.fit_and_render(whole, budget=35, plan=EIGHT)).truncated
    huge = ChatContext("", 0, 1)
    huge.append(Message(USER, " ".join(["w"] * 50)), None)
    with pytest.raises(InvalidRequest, match="does not fit"):
        await prompts.fit_and_render(huge, budget=35, plan=EIGHT)
    results = ChatContext("sys", 1, 1)  # several new turns (tools' results): all kept, each counted
    for i in range(10):
        results.append(Message(USER, " ".join(["w"] * 10)), 10, f"t{i}")
    for call in ("c1", "c2"):
        results.append(Message(TOOL, "r r r", tool_call_id=call), None)
    prompt = await prompts.fit_and_render(results, budget=35, plan=EIGHT)  # 1 + 3 x 10 + 2 x 3
    assert prompt.new_tokens == [3, 3] and prompt.context_turns == 4
    assert [m.tool_call_id for m in prompt.messages[-2:]] == ["c1", "c2"] and results.tokens[-2:] == [3, 3]


async def _short_model(request: Any) -> generation_pb2.GetModelInfoResponse:
    return generation_pb2.GetModelInfoResponse(max_model_len=40)


# -- preference capture --------------------------------------------------------------------------
async def test_a_best_of_answer_records_its_candidates_in_the_background() -> None:
    fake = FakeBackends()
    config = GatewayConfig(capture_preferences=True, max_best_of=4)
    flows = GatewayFlows.build(config, Backends(transport(fake)), GatewayMetrics())
    plan = Planner(config).plan(ChatOptions(max_tokens=8, best_of=3, temperature=1.0, seed=7))
    fake.generation.GetModelInfo = _named_model  # type: ignore[attr-defined]
    fake.reward.GetModelInfo = _named_reward  # type: ignore[attr-defined]
    events = [e async for e in flows.dataplane.chat("alice", "s1", "", [Message(USER, "hello there")], plan)]
    await flows.preferences.close(5.0)  # lets the background write finish
    [event] = fake.preferences
    assert event.kind == 2 and event.turn_id == events[-1].assistant_turn_id  # PREFERENCE_KIND_BEST_OF
    assert [(c.text, c.kept) for c in event.candidates] == [("c0", False), ("c1", False), ("c2", True)]
    assert event.sampling["best_of"] == "3" and event.sampling["seed"] == "7"
    assert (event.generator_model, event.reward_model) == ("lm@v1", "rm")


async def _named_model(request: Any) -> generation_pb2.GetModelInfoResponse:
    return generation_pb2.GetModelInfoResponse(model="lm", model_version="v1", max_model_len=2048)


async def _named_reward(request: Any) -> reward_pb2.RewardServiceGetModelInfoResponse:
    return reward_pb2.RewardServiceGetModelInfoResponse(model="rm")


# -- the servicer, with a fake context -----------------------------------------------------------
class FakeContext:
    """The servicer's view of a call: its metadata."""

    def __init__(self, key: str) -> None:
        self.key = key

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)


async def test_the_servicer_authenticates_converts_and_streams_the_dataplanes_events() -> None:
    fake = FakeBackends()
    flows = GatewayFlows.build(CONFIG, Backends(transport(fake)), GatewayMetrics())
    servicer = ChatServicer(flows, ApiKeyAuthenticator({hash_key("k1"): "alice"}))
    request = chat_pb2.ChatRequest(session_id="s1", message="hello there",
                                   options=chat_pb2.ChatOptions(max_tokens=8, best_of=2))
    context: Any = FakeContext("k1")
    replies = [r async for r in servicer.Chat(request, context)]
    assert [r.WhichOneof("event") for r in replies] == ["session", "delta", "final"]
    final = replies[-1].final
    assert (final.text, final.reward_score, len(final.candidates), final.usage.completion_tokens) == ("c1", 1.0, 2, 2)
    assert final.timings.total_seconds > 0 and replies[0].session.user_turn_id == "t1"
    with pytest.raises(Unauthenticated):
        [r async for r in servicer.Chat(request, FakeContext("wrong"))]  # type: ignore[arg-type]
    too_long = chat_pb2.ChatRequest(session_id="s1", message="x", options=chat_pb2.ChatOptions(max_tokens=65))
    with pytest.raises(InvalidRequest, match=r"^options\.max_tokens: 65"):
        [r async for r in servicer.Chat(too_long, context)]
