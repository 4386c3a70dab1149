"""The session records: the gateway's one codec of an answer's metadata, and the session service's
wire conversions (lossless both ways, so the gRPC door returns what the session service stored)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from chatstack.gateway.session_records import AnswerMeta
from chatstack.session.wire import header_from_proto, header_to_proto, turn_from_proto, turn_to_proto
from chatstack.v1 import common_pb2, session_pb2


def test_answer_meta_is_written_as_the_stored_strings_and_read_back() -> None:
    meta = AnswerMeta("stop", prompt_tokens=42, reward_score=1.25, best_of=4)
    assert meta.encode() == {"finish_reason": "FINISH_REASON_STOP", "prompt_tokens": "42",
                             "reward_score": "1.25", "best_of": "4"}
    assert AnswerMeta.decode(meta.encode()) == meta
    assert AnswerMeta().encode() == {} and AnswerMeta.reward(0.5) == {"reward_score": "0.5"}


def test_answer_meta_reads_what_does_not_parse_as_unset() -> None:
    odd = AnswerMeta.decode({"finish_reason": "done", "prompt_tokens": "x", "reward_score": "high",
                             "best_of": "", "edited": "yes"})
    assert odd == AnswerMeta()


def test_turns_and_sessions_convert_losslessly() -> None:
    created = Timestamp(seconds=1_700_000_000, nanos=123_000_000)
    turn = session_pb2.Turn(turn_id="t1", role=common_pb2.ROLE_ASSISTANT, content="hi", token_count=3,
                            create_time=created, metadata={"reward_score": "0.5"}, position=7)
    assert turn_to_proto(turn_from_proto(turn)) == turn
    assert turn_from_proto(turn).role == "assistant" and AnswerMeta.decode(turn_from_proto(turn).metadata).reward_score == 0.5
    session = session_pb2.Session(session_id="s", owner="alice", create_time=created, update_time=created,
                                  ttl_seconds=60, metadata={"k": "v"}, system_prompt="be brief",
                                  system_prompt_tokens=2, version=9, turn_count=4, total_tokens=99)
    assert header_to_proto(header_from_proto(session)) == session
