"""What is fuzzed: every RPC of every service (from the service descriptors), the per-field
domain strategies that keep requests cheap and reaching real code, and who calls (identities).

Owners: `alice` and `bob` (the gateway maps ALICE_KEY/BOB_KEY to them). Each owns seeded
sessions with fixed ids whose turns carry the owner's secret marker; the oracles look for
another owner's marker in every response.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import strategies as st

from chatstack.v1 import chat_pb2, generation_pb2, reward_pb2, safety_pb2, session_pb2, tokenizer_pb2
from tests.fuzz.protobuf_strategies import MessageBuilder, Overrides, is_map, message_class, small_texts
from tests.fuzz.wire import RawPayloads
from tests.stack_fixtures import ALICE_KEY, BOB_KEY

SERVICE_MODULES: dict[str, ModuleType] = {
    "tokenizer": tokenizer_pb2, "generation": generation_pb2, "reward": reward_pb2,
    "session": session_pb2, "chat": chat_pb2, "safety": safety_pb2,
}
SERVICES = tuple(SERVICE_MODULES)
OWNER_KEY, AUTH_KEY, REQUEST_ID_KEY = "x-chatstack-owner", "authorization", "x-request-id"
OWNERS = ("alice", "bob")
API_KEYS = {"alice": ALICE_KEY, "bob": BOB_KEY}
SEED_SESSIONS = {owner: (f"fuzz-{owner}-0", f"fuzz-{owner}-1") for owner in OWNERS}
SEED_IDS = tuple(sid for ids in SEED_SESSIONS.values() for sid in ids)
VOCAB_SIZE = 2056  # the tiny LM: 2048 + 8 added tokens


def secret_marker(owner: str) -> str:
    """Text only `owner`'s seeded sessions contain."""
    return f"{owner}-secret-marker"


# -- the RPCs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rpc:
    """One method of one service, from its descriptor."""

    service: str  # full name, e.g. chatstack.v1.TokenizerService
    name: str
    input: Descriptor
    output: Descriptor
    server_streaming: bool

    @property
    def path(self) -> str:
        """The gRPC method path."""
        return f"/{self.service}/{self.name}"

    @property
    def label(self) -> str:
        """`TokenizerService/Encode`."""
        return f"{self.service.rsplit('.', 1)[-1]}/{self.name}"

    def parse_request(self, payload: bytes) -> Message | None:
        """The request message, or None if the bytes do not parse."""
        try:
            return message_class(self.input).FromString(payload)
        except DecodeError:
            return None


def rpcs_of(service: str) -> list[Rpc]:
    """Every RPC of a service, in declaration order."""
    (svc,) = SERVICE_MODULES[service].DESCRIPTOR.services_by_name.values()
    return [Rpc(svc.full_name, m.name, m.input_type, m.output_type, m.server_streaming) for m in svc.methods]


def health_name(service: str) -> str:
    """The name the service's health check answers for."""
    (svc,) = SERVICE_MODULES[service].DESCRIPTOR.services_by_name.values()
    return str(svc.full_name)


# -- known ids: seeded sessions and turns, sessions created by the fuzz --------------------------
@dataclass
class KnownIds:
    """Ids the strategies aim at; filled at run time (the draw happens inside each example)."""

    turns: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)

    def turn(self, index: int) -> str:
        """A seeded turn id (any owner's), or a made-up one before seeding."""
        return self.turns[index % len(self.turns)] if self.turns else f"turn-{index}"

    def session(self, index: int) -> str:
        """A recently created session id (any owner's)."""
        return self.sessions[-1 - index % len(self.sessions)] if self.sessions else SEED_IDS[index % len(SEED_IDS)]

    def remember_session(self, sid: str) -> None:
        """Keep the 64 most recent session ids."""
        self.sessions = [*self.sessions[-63:], sid]


KNOWN = KnownIds()
ID_TEXT = ("", "fuzz-alice-0\n", "fuzz-alice-0 ", " fuzz-alice-0", "FUZZ-ALICE-0", "fuzz-alice-0\x00", "*",
           "fuzz-*", "fuzz-alice-?", "fuzz-[ab]*", "{fuzz-alice-0,fuzz-bob-0}", "fuzz:alice", "a:b:c", "\n",
           "x" * 128, "x" * 129, "../fuzz-bob-0", "owner:alice", "cs:fuzz-bob-0", "é", "😀", "\u202e0-ecila-zzuf")
PAGE_TOKENS = ("", "0", "1", "2", "50", "500", "²", "\u0661", "①", "-1", "+1", "1e3", " 1", "1 ", "0x10",
               "99999999999999999999", "18446744073709551616", "9223372036854775808", "abc", "*", "\n")


def weighted(common: st.SearchStrategy[object], rare: st.SearchStrategy[object], ratio: int = 4) -> st.SearchStrategy[object]:
    """`common` about `ratio` times as often as `rare`."""
    return st.one_of(*[common] * ratio, rare)


def session_ids() -> st.SearchStrategy[object]:
    """Ids of sessions that exist (any owner's), and ids that must not be trouble."""
    known = st.one_of(st.sampled_from(SEED_IDS), st.integers(0, 31).map(KNOWN.session))
    return weighted(known, st.one_of(st.sampled_from(ID_TEXT), small_texts()), 3)


def new_session_ids() -> st.SearchStrategy[object]:
    """CreateSession ids: none (server-made), fresh, taken, or malformed."""
    fresh = st.text(string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=10).map(lambda s: f"fz-{s}")
    return st.one_of(st.just(""), fresh, session_ids())


def turn_ids() -> st.SearchStrategy[object]:
    """Seeded turn ids (any owner's) and malformed ones."""
    return weighted(st.integers(0, 63).map(KNOWN.turn), st.one_of(st.sampled_from(ID_TEXT), small_texts()), 3)


def page_tokens() -> st.SearchStrategy[object]:
    """Page tokens: real offsets, unicode digits, overflowing numbers, junk."""
    return st.one_of(st.sampled_from(PAGE_TOKENS), small_texts())


def _few(low: int, high: int, *edges: int) -> st.SearchStrategy[object]:
    return weighted(st.integers(low, high), st.sampled_from(edges))


# max_tokens 0 means the service default (256 for generation, 128 for the gateway); 2048+ never fit.
MAX_TOKENS = _few(1, 8, 0, 2048, 2049, 65_536, 2**31 - 1, 2**31, 2**32 - 1)
TOKEN_IDS = weighted(st.integers(0, VOCAB_SIZE - 1),
                     st.sampled_from([VOCAB_SIZE, VOCAB_SIZE + 1, 65_535, 2**31, 2**32 - 1]), 3)
# Structured-output constraints: ones that compile, and ones that must be refused before admission.
GOOD_SCHEMAS = ['{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}',
                '{"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 3}', '{"type": "boolean"}',
                '{"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]}']
BAD_SCHEMAS = ["{", "[]", '{"type": "nonsense"}', '{"type": "string", "pattern": "("}',
               '{"type": "array", "items": ' * 80 + "{}" + "}" * 80, '{"$ref": "#/nowhere"}']
CONSTRAINT_REGEXES = ["[a-z]{2,4}", "(yes|no)", "[0-9]+", "(", "a{2,1}", "\\", ""]
GRAMMARS = ['root ::= "x" | "y"', 'root ::= a a\na ::= "p" | "q"', "root ::=", "%%%", 'root ::= undefined']
COMMON_OVERRIDES: dict[str, st.SearchStrategy[object]] = {
    "chatstack.v1.OutputConstraint.json_schema": weighted(st.sampled_from(GOOD_SCHEMAS), st.sampled_from(BAD_SCHEMAS)),
    "chatstack.v1.OutputConstraint.regex": st.sampled_from(CONSTRAINT_REGEXES),
    "chatstack.v1.OutputConstraint.grammar": st.sampled_from(GRAMMARS),
    "chatstack.v1.SamplingParams.max_tokens": MAX_TOKENS,
    "chatstack.v1.SamplingParams.n": _few(1, 2, 0, 3, 4, 5, 2**32 - 1),
    "chatstack.v1.SamplingParams.min_tokens": _few(0, 4, 9, 2**31, 2**32 - 1),
    "chatstack.v1.SamplingParams.logprobs": _few(0, 3, 20, 21, 2**32 - 1),
    "chatstack.v1.SamplingParams.temperature": weighted(st.sampled_from([0.0, 0.7, 1.0]),
                                                        st.sampled_from([2.5, -1.0, math.nan, math.inf, 1e-45])),
    "chatstack.v1.ChatOptions.max_tokens": MAX_TOKENS,
    "chatstack.v1.ChatOptions.best_of": _few(0, 2, 3, 8, 9, 2**32 - 1),
    "chatstack.v1.TokenIds.ids": TOKEN_IDS,
    "chatstack.v1.CreateSessionRequest.session_id": new_session_ids(),
    "chatstack.v1.PeekTurnsRequest.n": _few(0, 5, 1000, 2**31, 2**32 - 1),
    "chatstack.v1.GetTurnsRequest.count": _few(0, 1, 3, 16, 17, 2**32 - 1),
}
# Fields a plain (mostly valid) request always sets: without them nearly every request is rejected early.
ESSENTIAL_FIELDS = frozenset({"session_id", "turn_id", "message", "content", "role", "texts", "sequences", "ids",
                              "messages", "conversation", "candidates", "item", "items"})
FIELD_NAME_OVERRIDES = {"session_id": session_ids, "turn_id": turn_ids, "before_turn_id": turn_ids,
                        "page_token": page_tokens}


def overrides_for(service: str) -> Overrides:
    """Domain strategies of a service's request fields (ids, page tokens, generation sizes)."""
    table = dict(COMMON_OVERRIDES)
    for rpc in rpcs_of(service):
        for f in rpc.input.fields:
            maker = FIELD_NAME_OVERRIDES.get(f.name)
            if maker and f.full_name not in table:
                table[f.full_name] = maker()
    return table


# -- who calls -------------------------------------------------------------------------------
Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True)
class Identity:
    """Call metadata and who the service must take the caller for.

    owners: the owners the call may act as (None: the service has no owners); must_reject: the
    call carries no valid identity, so it must not succeed."""

    label: str
    metadata: Metadata
    owners: frozenset[str] | None
    must_reject: bool = False

    def with_extra(self, extra: Metadata) -> Identity:
        """The same identity with more (identity-neutral) metadata."""
        return Identity(self.label, self.metadata + extra, self.owners, self.must_reject)


def _owner(label: str, *values: str, owners: Sequence[str] = (), reject: bool = False) -> Identity:
    return Identity(label, tuple((OWNER_KEY, v) for v in values), frozenset(owners), reject)


SPOOFED_OWNERS = ("alice ", " alice", "ALICE", "*", "alice*", "a?ice", "[ab]*", "{alice,bob}", "alice:bob",
                  "cs:alice", "owner:*", "fuzz-alice-0", "-", "x" * 4000)
SESSION_IDENTITIES = (
    *[_owner(o, o, owners=[o]) for o in OWNERS],
    *[_owner(f"owner {v[:12]!r}", v, owners=[v]) for v in SPOOFED_OWNERS],
    _owner("no owner", reject=True),
    _owner("empty owner", "", reject=True),
    _owner("two owners", "alice", "bob", owners=OWNERS),
    Identity("owner in -bin key", (("x-chatstack-owner-bin", b"bob"),), frozenset(), True),
)


def _auth(label: str, value: str | None, owners: Sequence[str] = (), spoof: str | None = None,
          reject: bool = False) -> Identity:
    metadata: Metadata = () if value is None else ((AUTH_KEY, value),)
    if spoof is not None:
        metadata += ((OWNER_KEY, spoof),)
    return Identity(label, metadata, frozenset(owners), reject)


GATEWAY_USERS = tuple(_auth(o, f"Bearer {API_KEYS[o]}", [o]) for o in OWNERS)
GATEWAY_SPOOFS = (
    _auth("alice claiming bob", f"Bearer {ALICE_KEY}", ["alice"], spoof="bob"),
    _auth("bob claiming alice", f"Bearer {BOB_KEY}", ["bob"], spoof="alice"),
    _auth("lowercase bearer", f"bearer {ALICE_KEY}", ["alice"]),
    _auth("padded key", f"Bearer  {ALICE_KEY} ", ["alice"]),
    _auth("no key", None, reject=True),
    _auth("no key, owner header", None, spoof="alice", reject=True),
    _auth("empty bearer", "Bearer ", reject=True),
    _auth("wrong key", "Bearer not-a-key", reject=True),
    _auth("key + junk", f"Bearer {ALICE_KEY}x", reject=True),
    _auth("basic scheme", f"Basic {ALICE_KEY}", reject=True),
    _auth("bare key", ALICE_KEY, reject=True),
    _auth("glob key", "Bearer *", reject=True),
    Identity("two keys", ((AUTH_KEY, f"Bearer {ALICE_KEY}"), (AUTH_KEY, f"Bearer {BOB_KEY}")), frozenset(OWNERS)),
)
ANONYMOUS = Identity("anonymous", (), None)
NEUTRAL_EXTRAS = (((OWNER_KEY, "bob"),), ((AUTH_KEY, f"Bearer {BOB_KEY}"),), ((OWNER_KEY, "*"),))


def request_ids() -> st.SearchStrategy[Metadata]:
    """Usually no x-request-id; else printable junk or a long one (header size limits)."""
    printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
    sized = st.sampled_from([1024, 7000, 16_000]).map(lambda n: "r" * n)
    value = st.one_of(printable, sized).map(lambda v: ((REQUEST_ID_KEY, v),))
    return st.one_of(st.just(()), st.just(()), value)


def identities(service: str) -> st.SearchStrategy[Identity]:
    """Who calls `service`: mostly legitimate owners, often spoofed or missing identities."""
    if service == "session":
        base = weighted(st.sampled_from(SESSION_IDENTITIES[:2]), st.sampled_from(SESSION_IDENTITIES[2:]), 2)
    elif service == "chat":
        base = weighted(st.sampled_from(GATEWAY_USERS), st.sampled_from(GATEWAY_SPOOFS), 2)
    else:
        base = st.one_of(st.just(ANONYMOUS), st.sampled_from(NEUTRAL_EXTRAS).map(
            lambda extra: Identity("anonymous + owner metadata", extra, None)))
    return st.builds(Identity.with_extra, base, request_ids())


# -- calls -----------------------------------------------------------------------------------
def summarize(message: Message, limit: int = 400) -> str:
    """A short one-line rendering of a message: long strings and lists abbreviated."""
    parts = [f"{f.name}={_short_value(f, v)}" for f, v in message.ListFields()]
    text = "{" + ", ".join(parts) + "}"
    return text if len(text) <= limit else text[:limit] + "…}"


def _short_value(f: FieldDescriptor, value: object) -> str:
    if is_map(f):
        items = list(value.items())  # type: ignore[attr-defined]
        head = ", ".join(f"{_short_scalar(k)}: {_short_scalar(v)}" for k, v in items[:2])
        return f"map[{len(items)}]{{{head}{', …' if len(items) > 2 else ''}}}"
    if f.is_repeated:
        items = list(value)  # type: ignore[call-overload]
        if len(items) > 3:
            return f"[{len(items)} x {_short_scalar(items[0])}, …]"
        return "[" + ", ".join(_short_scalar(i) for i in items) + "]"
    return _short_scalar(value)


def _short_scalar(value: object) -> str:
    if isinstance(value, Message):
        return summarize(value, 200)
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:20]!r}…({len(value)} chars)"
    return repr(value)


@dataclass
class FuzzCall:
    """One request to send: raw payload bytes plus the message it came from, if any."""

    service: str
    rpc: Rpc
    payload: bytes
    identity: Identity
    kind: str
    message: Message | None = None

    def request(self) -> Message | None:
        """The request as the server will parse it (None if it cannot)."""
        return self.message if self.message is not None else self.rpc.parse_request(self.payload)

    def describe(self) -> str:
        """One line: RPC, identity, request."""
        if self.message is not None:
            body = summarize(self.message)
        else:
            body = f"{self.kind}: {len(self.payload)} bytes {self.payload[:48].hex()}{'…' if len(self.payload) > 48 else ''}"
        extra = [f"{k}[{len(v)}]" for k, v in self.identity.metadata if k == REQUEST_ID_KEY]
        return f"{self.rpc.label} as {self.identity.label}{' ' + ' '.join(extra) if extra else ''}: {body}"

    def __repr__(self) -> str:
        return f"FuzzCall({self.describe()})"


def message_call(service: str, rpc: Rpc, message: Message, identity: Identity) -> FuzzCall:
    """A call sending `message`."""
    return FuzzCall(service, rpc, message.SerializeToString(), identity, "message", message)


def _raw_call(service: str, rpc: Rpc, raw: tuple[str, bytes], identity: Identity) -> FuzzCall:
    return FuzzCall(service, rpc, raw[1], identity, raw[0])


def message_calls(service: str) -> st.SearchStrategy[FuzzCall]:
    """A generated (valid-or-invalid) request to any RPC of `service`."""
    builder = MessageBuilder(overrides_for(service), ESSENTIAL_FIELDS)
    return st.one_of([st.builds(partial(message_call, service, rpc), builder.messages(rpc.input), identities(service))
                      for rpc in rpcs_of(service)])


def raw_calls(service: str) -> st.SearchStrategy[FuzzCall]:
    """Malformed request bytes to any RPC of `service`."""
    builder = MessageBuilder(overrides_for(service), ESSENTIAL_FIELDS)
    return st.one_of([st.builds(partial(_raw_call, service, rpc),
                                RawPayloads(rpc.input, builder.messages(rpc.input)).payloads(), identities(service))
                      for rpc in rpcs_of(service)])
