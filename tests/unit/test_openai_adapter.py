"""The OpenAI adapter's translation pieces: error mapping, request bodies, response ids (no servers)."""

from __future__ import annotations

import json

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from chatstack.core import errors
from chatstack.core.chat_message import ChatMessage
from chatstack.core.roles import TOOL, USER
from chatstack.gateway.openai_api.errors import error_body, error_response, validation_response
from chatstack.gateway.openai_api.schemas import ChatCompletionRequest, ResponseCreateRequest
from chatstack.gateway.responses import ResponseRef


@pytest.mark.parametrize(("error", "status", "kind"), [
    (errors.InvalidRequest("n: too many"), 400, "invalid_request_error"),
    (errors.FailedPrecondition("empty"), 400, "invalid_request_error"),
    (errors.Unauthenticated("unknown API key"), 401, "authentication_error"),
    (errors.NotFound("no such session"), 404, "not_found_error"),
    (errors.VersionConflict("changed"), 409, "conflict_error"),
    (errors.Overloaded("busy"), 429, "rate_limit_error"),
    (errors.BackendUnavailable("down"), 503, "service_unavailable"),
    (errors.DeadlineExceeded("late"), 504, "timeout"),
])
def test_domain_errors_map_through_the_one_table_to_http(error: errors.ChatstackError, status: int,
                                                          kind: str) -> None:
    response = error_response(error)
    body = json.loads(bytes(response.body))
    assert response.status_code == status
    assert body["error"]["type"] == kind and body["error"]["message"] == str(error)


def test_the_param_is_the_field_a_message_names() -> None:
    assert error_body(400, "messages.0.content: too long")["error"]["param"] == "messages.0.content"
    assert error_body(400, "the model produced an empty answer; regenerate")["error"]["param"] is None


def test_a_malformed_body_is_400_naming_the_field() -> None:
    try:
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user"}], "temperature": 9})
    except ValidationError as exc:
        response = validation_response(RequestValidationError(exc.errors()))
    body = json.loads(bytes(response.body))
    assert response.status_code == 400 and body["error"]["param"] == "temperature"


def test_chat_completion_fields_become_options() -> None:
    request = ChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                                   {"role": "user", "content": "hi"}],
        "max_tokens": 50, "max_completion_tokens": 20, "stop": "END", "n": 2, "best_of": 3,
        "logprobs": True, "top_logprobs": 4, "presence_penalty": 0.5, "seed": 7, "unknown_field": 1})
    options = request.options()
    assert (options.max_tokens, options.stop, options.n, options.best_of, options.logprobs) == (20, ("END",), 2, 3, 4)
    assert (options.presence_penalty, options.seed) == (0.5, 7)
    assert [(m.role, m.content) for m in request.conversation()] == [("system", "be brief"), ("user", "hi")]


@pytest.mark.parametrize(("fields", "message"), [
    ({"top_logprobs": 2}, "top_logprobs: needs logprobs"),
    ({"n": 3, "best_of": 2}, "best_of: 2 is less than n"),
])
def test_inconsistent_chat_completion_fields_are_refused(fields: dict, message: str) -> None:
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                    **fields})
    with pytest.raises(errors.InvalidRequest, match=message):
        request.options()


def test_a_response_input_is_one_user_message_plus_instructions() -> None:
    plain = ResponseCreateRequest.model_validate({"model": "m", "input": "hello", "instructions": "terse"})
    assert plain.input_and_instructions() == ([(ChatMessage(USER, "hello"), "input")], "terse")
    assert not plain.options().truncate  # OpenAI's default: disabled
    items = ResponseCreateRequest.model_validate({"model": "m", "truncation": "auto", "input": [
        {"role": "system", "content": "rules"}, {"role": "user", "content": [{"type": "input_text", "text": "q"}]}]})
    assert items.input_and_instructions() == ([(ChatMessage(USER, "q"), "input")], "rules")
    assert items.options().truncate
    output = ResponseCreateRequest.model_validate({"model": "m", "input": [
        {"role": "user", "content": "a"}, {"type": "function_call_output", "call_id": "c1", "output": "o"}]})
    with pytest.raises(errors.InvalidRequest, match="input: one user message, or function_call_output items"):
        output.input_and_instructions()
    output.input = output.input[1:] * 2  # type: ignore[assignment,index,operator]
    assert output.input_and_instructions() == ([(ChatMessage(TOOL, "o", tool_call_id="c1"), "input[0].output"),
                                                (ChatMessage(TOOL, "o", tool_call_id="c1"), "input[1].output")], None)
    two = ResponseCreateRequest.model_validate({"model": "m", "input": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    with pytest.raises(errors.InvalidRequest, match="input: one user message"):
        two.input_and_instructions()


def test_response_ids_round_trip_and_foreign_ones_are_not_found() -> None:
    ref = ResponseRef("0123abcd" * 4, "89ef" * 4)
    assert ResponseRef.decode(ref.encode()) == ref
    for bad in ("resp_x_y", "resp_abc", "chatcmpl-1", f"resp_{'a' * 32}", "resp__ab"):
        with pytest.raises(errors.NotFound, match="response_id"):
            ResponseRef.decode(bad)
