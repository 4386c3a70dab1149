"""The session service's protobuf messages <-> the gateway's records (`session_records`), for the
typed clients and the gRPC adapter: the only gateway code besides them that knows the wire."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from chatstack.core.proto_convert import role_name, role_value
from chatstack.gateway.session_records import (
    ContextWindow,
    Message,
    PreferenceEvent,
    Session,
    Turn,
)
from chatstack.v1 import common_pb2, preference_pb2, session_pb2

KINDS = {"feedback": preference_pb2.PREFERENCE_KIND_FEEDBACK,
         "best_of": preference_pb2.PREFERENCE_KIND_BEST_OF,
         "regenerate": preference_pb2.PREFERENCE_KIND_REGENERATE,
         "edit": preference_pb2.PREFERENCE_KIND_EDIT, "undo": preference_pb2.PREFERENCE_KIND_UNDO}
RATINGS = {"up": preference_pb2.RATING_UP, "down": preference_pb2.RATING_DOWN,
           "": preference_pb2.RATING_UNSPECIFIED}
RATING_NAMES = {value: name for name, value in RATINGS.items()}


def _ms(ts: Timestamp) -> int:
    return int(ts.ToMilliseconds())


def _timestamp(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def messages_to_proto(messages: Iterable[Message]) -> list[common_pb2.ChatMessage]:
    """Messages on the wire."""
    return [common_pb2.ChatMessage(role=role_value(m.role), content=m.content)  # type: ignore[arg-type]
            for m in messages]


def message_from_proto(message: common_pb2.ChatMessage) -> Message:
    """A wire message as a record."""
    return Message(role_name(message.role), message.content)


def turn_from_proto(turn: session_pb2.Turn) -> Turn:
    """A wire turn as a record."""
    return Turn(turn.turn_id, role_name(turn.role), turn.content, turn.token_count, dict(turn.metadata),
                _ms(turn.create_time), turn.position)


def turns_from_proto(turns: Sequence[session_pb2.Turn]) -> list[Turn]:
    """Wire turns as records, in order."""
    return [turn_from_proto(t) for t in turns]


def turn_to_proto(turn: Turn) -> session_pb2.Turn:
    """A turn record on the wire."""
    return session_pb2.Turn(turn_id=turn.turn_id, role=role_value(turn.role),  # type: ignore[arg-type]
                            content=turn.content, token_count=turn.token_count, metadata=dict(turn.metadata),
                            create_time=_timestamp(turn.create_time_ms), position=turn.position)


def session_from_proto(s: session_pb2.Session) -> Session:
    """A wire session header as a record."""
    return Session(s.session_id, s.owner, s.system_prompt, s.system_prompt_tokens, dict(s.metadata),
                   s.version, s.turn_count, s.total_tokens, s.ttl_seconds, _ms(s.create_time),
                   _ms(s.update_time))


def session_to_proto(s: Session) -> session_pb2.Session:
    """A session record on the wire."""
    return session_pb2.Session(
        session_id=s.session_id, owner=s.owner, system_prompt=s.system_prompt,
        system_prompt_tokens=s.system_prompt_tokens, metadata=dict(s.metadata), version=s.version,
        turn_count=s.turn_count, total_tokens=s.total_tokens, ttl_seconds=s.ttl_seconds,
        create_time=_timestamp(s.create_time_ms), update_time=_timestamp(s.update_time_ms))


def context_from_proto(reply: session_pb2.GetContextResponse) -> ContextWindow:
    """GetContext's answer as a record."""
    return ContextWindow(reply.system_prompt, reply.system_prompt_tokens, turns_from_proto(reply.turns),
                         reply.omitted_turns, reply.version)


def preference_to_proto(e: PreferenceEvent) -> preference_pb2.PreferenceEvent:
    """A preference event on the wire (the rating was checked against RATINGS by the recorder)."""
    return preference_pb2.PreferenceEvent(
        kind=KINDS[e.kind], session_id=e.session_id, turn_id=e.turn_id, user_turn_id=e.user_turn_id,
        prompt=messages_to_proto(e.prompt), candidates=[preference_pb2.PreferenceCandidate(
            text=c.text, reward=c.reward, kept=c.kept, turn_id=c.turn_id,
            completion_tokens=c.completion_tokens)
            for c in e.candidates],
        rating=RATINGS.get(e.rating, preference_pb2.RATING_UNSPECIFIED),
        preferred_candidate=e.preferred_candidate,
        reason=e.reason, original_message=e.original_message, edited_message=e.edited_message,
        fork_session_id=e.fork_session_id, generator_model=e.generator_model, reward_model=e.reward_model,
        sampling=e.sampling, create_time=_timestamp(e.create_time_ms))
