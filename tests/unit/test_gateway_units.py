"""Gateway pieces without servers: API keys, downstream error mapping, converters."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from chatstack.core import errors
from chatstack.gateway.auth import ApiKeyAuthenticator, hash_key, new_key_line, parse_key_lines
from chatstack.gateway.downstream import map_rpc_error
from chatstack.gateway.model import Answer, Candidate, Choice, DeltaEvent, FinalEvent, SessionEvent
from chatstack.gateway.servicer import fill_event, options_from_proto
from chatstack.v1 import chat_pb2


def test_keys_file_maps_hashed_keys_to_owners(tmp_path: Path) -> None:
    key, line = new_key_line("carol")
    keys = tmp_path / "keys"
    keys.write_text(f"# comment\n\n{line}\n")
    auth = ApiKeyAuthenticator.from_config(str(keys), f"dave:{hash_key('dave-key')}")
    assert auth.owner_for(f"Bearer {key}") == "carol"
    assert auth.owner_for("bearer dave-key") == "dave"
    assert key not in keys.read_text()  # only the hash is stored


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer nope"])
def test_missing_malformed_or_unknown_keys_are_unauthenticated(header: str | None) -> None:
    auth = ApiKeyAuthenticator({hash_key("k"): "o"})
    with pytest.raises(errors.Unauthenticated):
        auth.owner_for(header)


def test_bad_key_lines_are_rejected_with_their_line_number() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_key_lines(["a:" + "0" * 64, "b:not-a-hash"])


class FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "error", "text"),
    [
        (grpc.StatusCode.UNAVAILABLE, errors.BackendUnavailable, "generation service unavailable: down"),
        (grpc.StatusCode.INTERNAL, errors.BackendUnavailable, "generation service unavailable: down"),
        (grpc.StatusCode.UNIMPLEMENTED, errors.BackendUnavailable, "generation service unavailable"),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidRequest, "down"),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound, "down"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.Overloaded, "generation service: down"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded, "generation service: down"),
        (grpc.StatusCode.ABORTED, errors.VersionConflict, "generation service: down"),
        # The client's own cancel never arrives as a downstream status; a backend that cancels
        # (e.g. while shutting down) is unavailable: retryable.
        (grpc.StatusCode.CANCELLED, errors.BackendUnavailable, "generation service unavailable: down"),
    ],
)
def test_downstream_status_maps_to_a_domain_error_naming_the_service(
    code: grpc.StatusCode, error: type, text: str
) -> None:
    mapped = map_rpc_error("generation", FakeRpcError(code, "down"))
    assert isinstance(mapped, error) and text in str(mapped)


def test_options_and_events_convert() -> None:
    options = options_from_proto(chat_pb2.ChatOptions(max_tokens=5, best_of=0, temperature=0.0))
    assert (options.max_tokens, options.best_of, options.temperature, options.top_p) == (5, 1, 0.0, None)
    assert fill_event(chat_pb2.ChatResponse(), SessionEvent("s", True, "u", 3, True, 40)).session.created
    assert fill_event(chat_pb2.ChatResponse(), DeltaEvent("hi", [1, 2])).delta.text == "hi"
    answer = Answer([Choice(0, "text", [1, 2], 1, reward=1.5)], prompt_tokens=10, completion_tokens=2,
                    candidates=[Candidate(0, 1.5, "text", 2, True)])
    final = fill_event(chat_pb2.EditResponse(), FinalEvent("a", 7, answer, {"ttft": 0.1, "total": 0.5})).final
    assert (final.usage.total_tokens, final.timings.ttft_seconds, final.candidates[0].chosen) == (12, 0.1, True)
