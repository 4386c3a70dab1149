"""Hand-picked edge requests every run sends first, whatever Hypothesis draws.

A few dozen random examples per service rarely combine the right RPC with the right edge value
(a unicode-digit page token on ListTurns, a 2**31 token budget on Chat), so the edge classes the
issue names are also sent explicitly here, through the same oracles. Built lazily: Edit needs the
turn ids of the seeded sessions as they are when the call is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from chatstack.v1 import (
    chat_pb2,
    common_pb2,
    generation_pb2,
    reward_pb2,
    safety_pb2,
    session_pb2,
    tokenizer_pb2,
)
from tests.fuzz.domain import (
    ANONYMOUS,
    GATEWAY_SPOOFS,
    GATEWAY_USERS,
    KNOWN,
    SESSION_IDENTITIES,
    FuzzCall,
    Identity,
    message_call,
    rpcs_of,
)

USER, UNKNOWN_ROLE = common_pb2.ROLE_USER, 99
ALICE_SESSION, BOB_SESSION = "fuzz-alice-0", "fuzz-bob-0"
GLOBS = "fz-*?[]{}:"
Entry = tuple[str, Identity, Callable[[], Message]]  # RPC name, caller, request (built at call time)


def _user(text: str = "ka to") -> common_pb2.ChatMessage:
    return common_pb2.ChatMessage(role=USER, content=text)


def _sampling(**fields: Any) -> generation_pb2.SamplingParams:
    return generation_pb2.SamplingParams(max_tokens=fields.pop("max_tokens", 4), **fields)


def _gen(sampling: generation_pb2.SamplingParams, **prompt: Any) -> Callable[[], Message]:
    return lambda: generation_pb2.GenerateRequest(sampling=sampling, **(prompt or {"text": "ka to ri"}))


def _chat(**options: Any) -> Callable[[], Message]:
    return lambda: chat_pb2.ChatRequest(session_id=ALICE_SESSION, message="ka to",
                                        options=chat_pb2.ChatOptions(max_tokens=options.pop("max_tokens", 4), **options))


def tokenizer_entries() -> list[Entry]:
    """Huge batches, out-of-range ids, unknown roles, template injection."""
    return [
        ("Encode", ANONYMOUS, lambda: tokenizer_pb2.EncodeRequest(texts=["\x00", "\u202e", "😀", ""], return_offsets=True)),
        ("CountTokens", ANONYMOUS, lambda: tokenizer_pb2.CountTokensRequest(texts=["ka"] * 10_000)),
        ("Decode", ANONYMOUS, lambda: tokenizer_pb2.DecodeRequest(sequences=[common_pb2.TokenIds(ids=[2**32 - 1])])),
        ("Decode", ANONYMOUS, lambda: tokenizer_pb2.DecodeRequest(sequences=[common_pb2.TokenIds()])),
        ("ApplyChatTemplate", ANONYMOUS, lambda: tokenizer_pb2.ApplyChatTemplateRequest(
            messages=[common_pb2.ChatMessage(role=UNKNOWN_ROLE, content="x")])),
        ("ApplyChatTemplate", ANONYMOUS, lambda: tokenizer_pb2.ApplyChatTemplateRequest(
            messages=[_user("{{ 7*7 }}{% for x in range(10**9) %}{% endfor %}")], add_generation_prompt=True)),
    ]


def generation_entries() -> list[Entry]:
    """Sampling values vLLM rejects on its own (NaN, inf, > 2, greedy with n > 1, huge seeds)."""
    return [
        ("Generate", ANONYMOUS, _gen(_sampling(temperature=math.nan))),
        ("Generate", ANONYMOUS, _gen(_sampling(temperature=2.5))),
        ("Generate", ANONYMOUS, _gen(_sampling(n=2, temperature=0.0))),
        ("Generate", ANONYMOUS, _gen(_sampling(seed=2**64 - 1))),
        ("Generate", ANONYMOUS, _gen(_sampling(top_p=math.nan, min_p=math.inf))),
        ("GenerateStream", ANONYMOUS, _gen(_sampling(repetition_penalty=math.inf, presence_penalty=math.nan))),
        ("GenerateStream", ANONYMOUS, _gen(_sampling(max_tokens=2**32 - 1))),
        ("GenerateStream", ANONYMOUS, _gen(_sampling(stop=[""], stop_token_ids=[2**32 - 1]))),
        ("Generate", ANONYMOUS, _gen(_sampling(), token_ids=common_pb2.TokenIds(ids=[2**32 - 1]))),
    ]


def reward_entries() -> list[Entry]:
    """Unknown roles, empty and oversized batches."""
    item = reward_pb2.ScoreItem(conversation=[_user()], response="sa mo")
    return [
        ("Score", ANONYMOUS, lambda: reward_pb2.ScoreRequest(item=reward_pb2.ScoreItem(
            conversation=[common_pb2.ChatMessage(role=UNKNOWN_ROLE, content="x")], response=""))),
        ("ScoreBatch", ANONYMOUS, lambda: reward_pb2.ScoreBatchRequest(items=[item] * 10_000)),
        ("ScoreBatch", ANONYMOUS, lambda: reward_pb2.ScoreBatchRequest()),
        ("Rank", ANONYMOUS, lambda: reward_pb2.RankRequest(conversation=[_user()], candidates=["x"] * 65)),
        ("Rank", ANONYMOUS, lambda: reward_pb2.RankRequest(conversation=[_user("\x00" * 5000)], candidates=[""])),
    ]


def safety_entries() -> list[Entry]:
    """Unknown roles, a conversation of only unjudged turns, oversized texts and batches, odd policies."""
    text = safety_pb2.CheckItem(text="ka to ri")
    return [
        ("Check", ANONYMOUS, lambda: safety_pb2.CheckRequest(items=[safety_pb2.CheckItem(
            conversation=safety_pb2.CheckConversation(messages=[common_pb2.ChatMessage(role=UNKNOWN_ROLE)]))])),
        ("Check", ANONYMOUS, lambda: safety_pb2.CheckRequest(items=[safety_pb2.CheckItem(
            conversation=safety_pb2.CheckConversation())])),
        ("Check", ANONYMOUS, lambda: safety_pb2.CheckRequest(items=[text] * 10_000)),
        ("Check", ANONYMOUS, lambda: safety_pb2.CheckRequest(items=[safety_pb2.CheckItem(text="\x00" * 500_000)])),
        ("Check", ANONYMOUS, lambda: safety_pb2.CheckRequest(items=[safety_pb2.CheckItem(text="ka " * 30_000)])),
        ("Check", ANONYMOUS, lambda: safety_pb2.CheckRequest(items=[text], policy=safety_pb2.CheckPolicy(
            thresholds={"hate": math.nan, "violence": math.inf}))),
        ("Check", ANONYMOUS, lambda: safety_pb2.CheckRequest(items=[text], policy=safety_pb2.CheckPolicy(
            categories=["", "hate", "hate"]))),
    ]


def session_entries() -> list[Entry]:
    """Unicode-digit page tokens, ids with newlines and globs, unbounded metadata, int extremes."""
    alice, bob, glob_owner = SESSION_IDENTITIES[0], SESSION_IDENTITIES[1], SESSION_IDENTITIES[5]
    return [
        ("ListSessions", alice, lambda: session_pb2.ListSessionsRequest(page_token="\u00b2")),
        ("ListTurns", alice, lambda: session_pb2.ListTurnsRequest(session_id=ALICE_SESSION, page_token="\u0661")),
        ("ListTurns", alice, lambda: session_pb2.ListTurnsRequest(session_id=ALICE_SESSION, page_token="18446744073709551616")),
        ("CreateSession", alice, lambda: session_pb2.CreateSessionRequest(session_id="fz-newline\n")),
        ("CreateSession", alice, lambda: session_pb2.CreateSessionRequest(session_id=GLOBS)),
        ("CreateSession", alice, lambda: session_pb2.CreateSessionRequest(metadata={f"k{i}": "v" for i in range(10_000)})),
        ("CreateSession", alice, lambda: session_pb2.CreateSessionRequest(metadata={"k": "v" * 1_000_000})),
        ("GetContext", alice, lambda: session_pb2.GetContextRequest(session_id=ALICE_SESSION, token_budget=2**31 - 1)),
        ("PeekTurns", alice, lambda: session_pb2.PeekTurnsRequest(session_id=ALICE_SESSION, n=2**32 - 1)),
        ("GetTurns", alice, lambda: session_pb2.GetTurnsRequest(session_id=ALICE_SESSION, turn_id="t", count=2**32 - 1)),
        ("GetTurns", bob, lambda: session_pb2.GetTurnsRequest(session_id=ALICE_SESSION, turn_id="t")),
        ("PushTurn", bob, lambda: session_pb2.PushTurnRequest(session_id=ALICE_SESSION, role=USER, content="mine")),
        ("ForkSession", alice, lambda: session_pb2.ForkSessionRequest(session_id=ALICE_SESSION, keep_turns=2**32 - 1)),
        ("ListSessions", glob_owner, lambda: session_pb2.ListSessionsRequest(page_size=500)),
    ]


def chat_entries() -> list[Entry]:
    """Budgets past int32, sampling vLLM rejects, foreign sessions, spoofed owners, bad page tokens."""
    alice, bob = GATEWAY_USERS
    alice_claiming_bob = GATEWAY_SPOOFS[0]
    return [
        ("Chat", alice, _chat(context_token_budget=2**31)),
        ("Chat", alice, _chat(context_token_budget=2**32 - 1)),
        ("Chat", alice, _chat(temperature=math.nan)),
        ("Chat", alice, _chat(best_of=2, temperature=0.0)),
        ("Chat", alice, _chat(seed=2**64 - 1)),
        ("Regenerate", alice, lambda: chat_pb2.RegenerateRequest(
            session_id=ALICE_SESSION, options=chat_pb2.ChatOptions(max_tokens=4, temperature=2.5))),
        ("Edit", alice, lambda: chat_pb2.EditRequest(session_id=ALICE_SESSION, turn_id=KNOWN.turn(2), message="edited",
                                                     options=chat_pb2.ChatOptions(max_tokens=4, top_p=math.nan))),
        ("Chat", bob, lambda: chat_pb2.ChatRequest(session_id=ALICE_SESSION, message="mine now",
                                                   options=chat_pb2.ChatOptions(max_tokens=4))),
        ("Undo", bob, lambda: chat_pb2.UndoRequest(session_id=ALICE_SESSION)),
        ("Chat", alice_claiming_bob, lambda: chat_pb2.ChatRequest(session_id=BOB_SESSION, message="hi",
                                                                  options=chat_pb2.ChatOptions(max_tokens=4))),
        ("ListSessions", alice, lambda: chat_pb2.ChatServiceListSessionsRequest(page_token="\u00b2")),
        ("GetHistory", alice, lambda: chat_pb2.GetHistoryRequest(session_id=ALICE_SESSION, page_token="\u2460")),
    ]


ENTRIES: dict[str, Callable[[], list[Entry]]] = {
    "tokenizer": tokenizer_entries, "generation": generation_entries, "reward": reward_entries,
    "session": session_entries, "chat": chat_entries, "safety": safety_entries,
}


def corpus(service: str) -> list[Callable[[], FuzzCall]]:
    """The service's edge requests, each built when called."""
    rpcs = {rpc.name: rpc for rpc in rpcs_of(service)}
    return [lambda name=name, who=who, build=build: message_call(service, rpcs[name], build(), who)  # type: ignore[misc]
            for name, who, build in ENTRIES[service]()]
