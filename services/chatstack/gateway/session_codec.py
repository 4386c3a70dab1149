"""The gateway's records on the wire, beside the session service's own conversions
(`chatstack.session.wire`): chat messages and preference events, for the typed clients."""

from __future__ import annotations

from chatstack.core.proto_convert import chat_messages_to_proto, tool_calls_to_proto
from chatstack.gateway.session_records import PreferenceEvent
from chatstack.session.wire import timestamp
from chatstack.v1 import preference_pb2

KINDS = {"feedback": preference_pb2.PREFERENCE_KIND_FEEDBACK,
         "best_of": preference_pb2.PREFERENCE_KIND_BEST_OF,
         "regenerate": preference_pb2.PREFERENCE_KIND_REGENERATE,
         "edit": preference_pb2.PREFERENCE_KIND_EDIT, "undo": preference_pb2.PREFERENCE_KIND_UNDO,
         "moderated": preference_pb2.PREFERENCE_KIND_MODERATED}
RATINGS = {"up": preference_pb2.RATING_UP, "down": preference_pb2.RATING_DOWN,
           "": preference_pb2.RATING_UNSPECIFIED}
RATING_NAMES = {value: name for name, value in RATINGS.items()}


def preference_to_proto(e: PreferenceEvent) -> preference_pb2.PreferenceEvent:
    """A preference event on the wire (the rating was checked against RATINGS by the recorder)."""
    return preference_pb2.PreferenceEvent(
        kind=KINDS[e.kind], session_id=e.session_id, turn_id=e.turn_id, user_turn_id=e.user_turn_id,
        prompt=chat_messages_to_proto(e.prompt), candidates=[preference_pb2.PreferenceCandidate(
            text=c.text, reward=c.reward, kept=c.kept, turn_id=c.turn_id,
            completion_tokens=c.completion_tokens, tool_calls=tool_calls_to_proto(c.tool_calls))
            for c in e.candidates],
        rating=RATINGS.get(e.rating, preference_pb2.RATING_UNSPECIFIED),
        preferred_candidate=e.preferred_candidate,
        reason=e.reason, original_message=e.original_message, edited_message=e.edited_message,
        fork_session_id=e.fork_session_id, generator_model=e.generator_model, reward_model=e.reward_model,
        sampling=e.sampling, create_time=timestamp(e.create_time_ms))
