"""Session servicer converters and the Lua error mapping (no Redis, no gRPC server)."""

import pytest

from chatstack.core import errors
from chatstack.core.page_tokens import decode_page_token, encode_page_token
from chatstack.session.model import ContextWindow, Turn
from chatstack.session.servicer import context_to_proto, page_size, turn_to_proto
from chatstack.session.store import _domain_error
from chatstack.v1 import common_pb2


@pytest.mark.parametrize(
    ("reply", "error", "text"),
    [
        ("NOTFOUND", errors.NotFound, "session not found"),
        ("VERSION 7", errors.VersionConflict, "at version 7"),
        ("EMPTY", errors.FailedPrecondition, "empty"),
        ("FULL 10", errors.LimitExceeded, "10 turns"),
        ("EXISTS", errors.AlreadyExists, "exists"),
        ("RANGE 2", errors.InvalidRequest, "2 turns"),
        ("OOM command not allowed", errors.BackendUnavailable, "could not complete"),
    ],
)
def test_lua_error_replies_map_to_domain_errors(reply: str, error: type, text: str) -> None:
    exc = _domain_error(reply)
    assert isinstance(exc, error) and text in str(exc)


def test_turn_and_context_convert_to_proto() -> None:
    turn = Turn("t1", "assistant", "hi", 3, 1_700_000_000_123, {"reward_score": "0.5"}, 4)
    msg = turn_to_proto(turn)
    assert (msg.role, msg.position, msg.metadata["reward_score"]) == (common_pb2.ROLE_ASSISTANT, 4, "0.5")
    assert msg.create_time.ToMilliseconds() == 1_700_000_000_123
    window = context_to_proto(ContextWindow("sys", 2, [turn], 5, 3, 9))
    assert (window.truncated, window.omitted_turns, window.total_tokens) == (True, 3, 5)


def test_page_tokens_round_trip_and_sizes() -> None:
    assert decode_page_token("", "turns") == 0
    assert decode_page_token(encode_page_token("turns", 40), "turns") == 40
    assert page_size(0, 50, 500) == 50 and page_size(9999, 50, 500) == 500


@pytest.mark.parametrize("token", ["-1", "40", "²", "99999999999999999999999", "dHVybnM6wrI",
                                   encode_page_token("sessions", 3), encode_page_token("turns", 10**10),
                                   "x" * 100, "dHVybnM6NDA\n"])
def test_page_tokens_not_issued_by_the_listing_are_invalid_argument(token: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="page_token"):
        decode_page_token(token, "turns")


def test_unknown_redis_errors_carry_no_backend_text() -> None:
    error = _domain_error("ERR Error running script f_0123abcd: @user_script:12: bad argument")
    assert isinstance(error, errors.BackendUnavailable)
    assert "script" not in str(error) and "0123abcd" not in str(error)

