"""Locust users of chatstack over gRPC, and over the gateway's OpenAI-compatible HTTP API.

    locust -f loadtest/locustfile.py --headless -u 10 -r 5 -t 30s           # every user class
    locust -f loadtest/locustfile.py --headless -u 4 -r 4 -t 30s TokenizerUser  # one service alone

ChatUser is the real workload: conversations through the gateway; OpenAIUser is the same gateway
as the official SDKs see it (streamed chat completions and Responses conversations over HTTP).
The per-service users load one backend directly, to find which one is the bottleneck. Targets
default to the `make run` ports (`--gateway`, `--tokenizer`, ..., `--openai-base-url`, or
CHATSTACK_LOADTEST_*); `--help` lists every option.
"""

from __future__ import annotations

import random
import sys
import uuid
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # `loadtest.*` from any working directory
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from locust import events, tag, task  # first: Locust patches the process with gevent

from chatstack.client import ChatClient, chat_options
from chatstack.v1 import (
    chat_pb2,
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    reward_pb2,
    reward_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)
from loadtest.grpc_user import GrpcUser, init_grpc_gevent, write_final_csv
from loadtest.http_user import SseUser
from loadtest.settings import API_KEY_SERVICES, OPENAI, LoadSettings, SettingsError, add_arguments, reachable
from loadtest.sse import ChatCompletionStream, ResponseStream

init_grpc_gevent()  # before any channel exists in this process

WORDS = ("ka", "to", "ri", "sa", "mo", "lu", "hello", "tell", "me", "about", "the", "weather", "a", "story",
         "why", "is", "sky", "blue", "please", "short", "answer", "again", "more", "detail")
USER, ASSISTANT = common_pb2.ROLE_USER, common_pb2.ROLE_ASSISTANT


def words(low: int, high: int) -> str:
    """A short random message."""
    return " ".join(random.choice(WORDS) for _ in range(random.randint(low, high)))


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any, **_: Any) -> None:
    add_arguments(parser)


@events.init.add_listener
def _check_settings(environment: Any, **_: Any) -> None:
    """Refuse bad settings (a non-loopback target, no API key for ChatUser or OpenAIUser) before any
    user starts; headless, also a target nothing listens on (a stack that is not running)."""
    options = environment.parsed_options
    services = {getattr(cls, "service", "") for cls in environment.user_classes or []} - {""}
    try:
        settings = LoadSettings.from_options(options)
        if services & API_KEY_SERVICES:
            settings.api_key()
    except SettingsError as err:
        sys.exit(f"chatstack load test: {err}")
    if options is not None and getattr(options, "headless", False):
        for service in sorted(services):
            address, option = settings.target(service)
            if not reachable(address):
                sys.exit(f"chatstack load test: nothing listens on {address} ({service}): start the stack "
                         f"with `make run`, or pass {option}")


@events.quitting.add_listener
def _final_csv(environment: Any, **_: Any) -> None:
    """Complete `--csv` reports: calls that ended in the last second are in them too."""
    if environment.parsed_options is not None:
        write_final_csv(environment)


class ChatstackUser(GrpcUser):
    """A gRPC user with the load test's settings and a think time between tasks."""

    abstract = True
    service = ""  # the target this class loads: gateway, tokenizer, generation, reward or session
    service_user = True  # per-service users wait --service-think-time; ChatUser waits --think-time

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.settings = LoadSettings.from_options(environment.parsed_options)

    def wait_time(self) -> float:
        """Seconds to wait between two tasks."""
        low, high = self.settings.service_think_time if self.service_user else self.settings.think_time
        return random.uniform(low, high)


class ChatUser(ChatstackUser):
    """A person chatting through the gateway: sessions of a few turns with think time between them.

    Sometimes asks again (Regenerate), sometimes asks best_of > 1, sometimes walks away mid-answer
    (cancels the stream after the first deltas: reported as `Chat (cancelled)`, not a failure).
    """

    service = "gateway"
    weight = 4
    service_user = False

    def on_start(self) -> None:
        """A client (one channel) per user; the session is opened by the first task."""
        address = self.settings.gateway
        self.client = ChatClient(address, self.settings.api_key(), timeout=self.settings.rpc_timeout,
                                 channel=self.channel(address))
        self.session_id = ""
        self.turns_left = 0
        self.may_regenerate = False

    def on_stop(self) -> None:
        """Delete the open session, close the channel."""
        self.close_session()
        super().on_stop()

    def open_session(self) -> None:
        """CreateSession through the gateway; a conversation of --turns turns follows."""
        session = self.unary("CreateSession", lambda: self.client.create_session(system_prompt="be brief"))
        if session is not None:
            self.session_id = session.session_id
            self.turns_left = random.randint(*self.settings.turns)

    def close_session(self) -> None:
        """DeleteSession: the load test leaves no sessions behind."""
        self.may_regenerate = False  # nothing to regenerate in the next session
        if self.session_id:
            sid, self.session_id = self.session_id, ""
            self.unary("DeleteSession", lambda: self.client.delete_session(sid))

    @tag("gateway", "chat")
    @task
    def converse(self) -> None:
        """One action of the conversation: a new message, or regenerating the last answer."""
        if not self.session_id:
            self.open_session()
            return
        options: dict[str, Any] = {"max_tokens": self.settings.max_tokens, "temperature": 1.0}
        if self.may_regenerate and random.random() < self.settings.p_regenerate:
            self.may_regenerate = False
            self.stream("Regenerate", lambda: self.client.stub.Regenerate(
                self.regenerate_request(options), metadata=self.client.metadata, timeout=self.client.timeout))
            return
        roll = random.random()
        name, cancel_after = "Chat", 0
        if roll < self.settings.p_cancel:
            cancel_after = self.settings.cancel_after
            options["max_tokens"] = max(options["max_tokens"], 4 * cancel_after)
        elif roll < self.settings.p_cancel + self.settings.p_best_of:
            name = "Chat best_of"
            options["best_of"] = random.randint(2, self.settings.max_best_of)
        result = self.stream(name, lambda: self.client.chat_stream(words(2, 8), session_id=self.session_id,
                                                                   **options),
                             cancel_after_deltas=cancel_after)
        self.may_regenerate = result.ok
        self.turns_left -= 1  # failed and cancelled turns count too: a broken stack cannot loop forever
        if self.turns_left <= 0:
            self.close_session()

    def regenerate_request(self, options: dict[str, Any]) -> chat_pb2.RegenerateRequest:
        """A RegenerateRequest for the open session."""
        return chat_pb2.RegenerateRequest(session_id=self.session_id, options=chat_options(**options))


def model_list_problem(answer: Any) -> str:
    """What is wrong with a `GET /v1/models` answer ('' if it names a model)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not data or not isinstance(data[0], dict) or not isinstance(data[0].get("id"), str):
        return f"GET /models: no model id in {str(answer)[:80]}"
    return ""


def deleted_problem(answer: Any) -> str:
    """What is wrong with a DELETE's answer ('' if it says `deleted: true`)."""
    return "" if isinstance(answer, dict) and answer.get("deleted") is True else f"not deleted: {answer}"


class OpenAIUser(SseUser):
    """An application on the gateway's OpenAI-compatible HTTP API, as the official SDKs call it.

    Streamed chat completions (stateless), and streamed Responses conversations of --openai-turns
    turns, each turn continuing the previous response (`previous_response_id`); a conversation is
    deleted after its last turn, after a failed turn and when the user stops. The served model's
    id comes from `GET /models`.
    """

    service = OPENAI
    weight = 2

    def __init__(self, environment: Any) -> None:
        self.settings = LoadSettings.from_options(environment.parsed_options)
        self.host = self.settings.openai_base_url  # before HttpUser makes its client: paths follow it
        super().__init__(environment)
        self.headers = {"Authorization": f"Bearer {self.settings.api_key()}"}
        self.timeout = self.settings.rpc_timeout
        self.model = ""
        self.previous_response_id = ""
        self.conversation_id = ""
        self.turns_left = 0

    def wait_time(self) -> float:
        """Seconds to wait between two tasks (--think-time, as a ChatUser)."""
        return random.uniform(*self.settings.think_time)

    def on_stop(self) -> None:
        """Delete the open conversation."""
        self.end_conversation()

    def ensure_model(self) -> bool:
        """`GET /models` once (and again after a failure): every request names the served model."""
        if not self.model:
            answer = self.call("GET", "/models", "openai models", check=model_list_problem)
            self.model = answer["data"][0]["id"] if answer is not None else ""
        return bool(self.model)

    @tag("openai", "http", "chat.completions")
    @task
    def chat_completion(self) -> None:
        """A streamed chat completion with the usage chunk: `openai chat.completions` and its TTFT."""
        if not self.ensure_model():
            return
        body = {"model": self.model, "messages": [{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": words(2, 8)}],
                "max_tokens": self.settings.max_tokens, "temperature": 1.0, "stream": True,
                "stream_options": {"include_usage": True}}
        self.stream("/chat/completions", "openai chat.completions", body,
                    ChatCompletionStream(expect_usage=True))

    @tag("openai", "http", "responses")
    @task
    def respond(self) -> None:
        """One turn of a Responses conversation (`openai responses` and its TTFT): the first turn
        starts one, the next ones continue the previous response, the last deletes it."""
        if not self.ensure_model():
            return
        body: dict[str, Any] = {"model": self.model, "input": words(2, 8), "stream": True,
                                "max_output_tokens": self.settings.max_tokens, "temperature": 1.0}
        if self.previous_response_id:
            body["previous_response_id"] = self.previous_response_id
        else:
            body["instructions"] = "be brief"  # a new conversation's system prompt
            self.turns_left = random.randint(*self.settings.openai_turns)
        reply = ResponseStream()
        try:
            ok = self.stream("/responses", "openai responses", body, reply)
        finally:  # also when Locust stops the user mid-stream: on_stop deletes the conversation
            self.conversation_id = reply.conversation_id or self.conversation_id
        self.previous_response_id = str(reply.response["id"]) if ok and reply.response else ""
        self.turns_left -= 1  # a failed turn counts too: a broken stack cannot loop forever
        if self.turns_left <= 0 or not ok:
            self.end_conversation()

    def end_conversation(self) -> None:
        """`DELETE /conversations/{id}`: the load test leaves no conversations behind."""
        self.previous_response_id, self.turns_left = "", 0
        if self.conversation_id:
            conversation, self.conversation_id = self.conversation_id, ""
            self.call("DELETE", f"/conversations/{conversation}", "openai conversations.delete",
                      check=deleted_problem)


class TokenizerUser(ChatstackUser):
    """Loads the tokenizer service alone: Encode, CountTokens, ApplyChatTemplate."""

    service = "tokenizer"
    weight = 1

    def on_start(self) -> None:
        """A stub on this user's channel."""
        self.stub = tokenizer_pb2_grpc.TokenizerServiceStub(self.channel(self.settings.tokenizer))

    @tag("tokenizer")
    @task(2)
    def encode(self) -> None:
        """Encode a few short texts."""
        request = tokenizer_pb2.EncodeRequest(texts=[words(3, 30) for _ in range(random.randint(1, 8))],
                                              add_special_tokens=True)
        self.unary("Tokenizer.Encode", lambda: self.stub.Encode(request, timeout=self.settings.rpc_timeout))

    @tag("tokenizer")
    @task(2)
    def count_tokens(self) -> None:
        """Count the tokens of a few texts."""
        request = tokenizer_pb2.CountTokensRequest(texts=[words(3, 30) for _ in range(random.randint(1, 8))])
        self.unary("Tokenizer.CountTokens",
                   lambda: self.stub.CountTokens(request, timeout=self.settings.rpc_timeout))

    @tag("tokenizer")
    @task(1)
    def apply_chat_template(self) -> None:
        """Render a short conversation with the chat template."""
        messages = [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content="be brief")]
        for i in range(random.randint(1, 6)):
            role = USER if i % 2 == 0 else ASSISTANT
            messages.append(common_pb2.ChatMessage(role=role, content=words(2, 12)))
        request = tokenizer_pb2.ApplyChatTemplateRequest(messages=messages, add_generation_prompt=True)
        self.unary("Tokenizer.ApplyChatTemplate",
                   lambda: self.stub.ApplyChatTemplate(request, timeout=self.settings.rpc_timeout))


class GenerationUser(ChatstackUser):
    """Loads the generation service alone: GenerateStream, with TTFT and the total reported."""

    service = "generation"
    weight = 1

    def on_start(self) -> None:
        """A stub on this user's channel."""
        self.stub = generation_pb2_grpc.GenerationServiceStub(self.channel(self.settings.generation))

    @tag("generation")
    @task
    def generate_stream(self) -> None:
        """Stream a completion of a short prompt."""
        sampling = generation_pb2.SamplingParams(n=1, max_tokens=self.settings.max_tokens, min_tokens=1,
                                                 temperature=1.0)
        request = generation_pb2.GenerateStreamRequest(text=words(4, 16), sampling=sampling)
        self.stream("Generation.GenerateStream",
                    lambda: self.stub.GenerateStream(request, timeout=self.settings.rpc_timeout))


class RewardUser(ChatstackUser):
    """Loads the reward service alone: Score one answer, Rank a few candidates."""

    service = "reward"
    weight = 1

    def on_start(self) -> None:
        """A stub on this user's channel."""
        self.stub = reward_pb2_grpc.RewardServiceStub(self.channel(self.settings.reward))

    @staticmethod
    def conversation() -> list[common_pb2.ChatMessage]:
        """A one-question conversation."""
        return [common_pb2.ChatMessage(role=USER, content=words(3, 12))]

    @tag("reward")
    @task(2)
    def score(self) -> None:
        """Score one answer."""
        request = reward_pb2.ScoreRequest(item=reward_pb2.ScoreItem(conversation=self.conversation(),
                                                                    response=words(4, 20)))
        self.unary("Reward.Score", lambda: self.stub.Score(request, timeout=self.settings.rpc_timeout))

    @tag("reward")
    @task(1)
    def rank(self) -> None:
        """Rank 2..max-best-of candidates, as best-of-n does."""
        request = reward_pb2.RankRequest(conversation=self.conversation(), candidates=[
            words(4, 20) for _ in range(random.randint(2, self.settings.max_best_of))])
        self.unary("Reward.Rank", lambda: self.stub.Rank(request, timeout=self.settings.rpc_timeout))


class SessionUser(ChatstackUser):
    """Loads the session service alone (its own owner id): CreateSession, PushTurn, GetContext, PopTurn."""

    service = "session"
    weight = 1
    max_depth = 64  # pop when the stack is this deep, so a long run does not grow Redis without bound

    def on_start(self) -> None:
        """A stub on this user's channel, an owner of its own."""
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel(self.settings.session))
        self.metadata = (("x-chatstack-owner", f"loadtest-{uuid.uuid4().hex[:12]}"),)
        self.session_id = ""
        self.depth = 0

    def on_stop(self) -> None:
        """Delete the session, close the channel."""
        if self.session_id:
            request = session_pb2.DeleteSessionRequest(session_id=self.session_id)
            self.unary("Session.DeleteSession", lambda: self.stub.DeleteSession(
                request, metadata=self.metadata, timeout=self.settings.rpc_timeout))
        super().on_stop()

    def call(self, name: str, method: Any, request: Any) -> Any:
        """A unary session RPC with the owner metadata, reported as `Session.<name>`."""
        return self.unary(f"Session.{name}",
                          lambda: method(request, metadata=self.metadata, timeout=self.settings.rpc_timeout))

    def ensure_session(self) -> bool:
        """CreateSession once (and again after a failure)."""
        if not self.session_id:
            request = session_pb2.CreateSessionRequest(system_prompt="be brief", system_prompt_tokens=2)
            reply = self.call("CreateSession", self.stub.CreateSession, request)
            if reply is not None:
                self.session_id, self.depth = reply.session.session_id, 0
        return bool(self.session_id)

    @tag("session")
    @task(4)
    def push_turn(self) -> None:
        """Push a user or assistant turn (or pop when the stack is deep)."""
        if not self.ensure_session():
            return
        if self.depth >= self.max_depth:
            self.pop_turn()
            return
        content = words(2, 20)
        reply = self.call("PushTurn", self.stub.PushTurn, session_pb2.PushTurnRequest(
            session_id=self.session_id, role=USER if self.depth % 2 == 0 else ASSISTANT, content=content,
            token_count=len(content.split())))
        self.depth += reply is not None

    @tag("session")
    @task(3)
    def get_context(self) -> None:
        """Read the context that fits a random token budget."""
        if self.ensure_session():
            self.call("GetContext", self.stub.GetContext, session_pb2.GetContextRequest(
                session_id=self.session_id, token_budget=random.randint(16, 512)))

    @tag("session")
    @task(1)
    def pop_turn(self) -> None:
        """Pop the top turn (push first when the stack is empty)."""
        if not self.ensure_session():
            return
        if self.depth == 0:
            self.push_turn()
            return
        request = session_pb2.PopTurnRequest(session_id=self.session_id)
        reply = self.call("PopTurn", self.stub.PopTurn, request)
        self.depth -= reply is not None

