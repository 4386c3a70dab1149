"""Tool calling through the gateway's front doors, driven by the official `openai` SDK: forced
(named) and `required` calls are constrained, so the tiny random model's arguments are valid for
the tool's schema every time, streamed and not; a tool result continues the conversation;
`auto` reads calls back in the model's own format; a bad tool is a 400 naming it."""

from __future__ import annotations

import json
from typing import Any

import grpc
import jsonschema
import openai
import pytest

from chatstack.client import ChatClient, function_tool
from chatstack.v1 import common_pb2
from tests.integration.conftest import ALICE_KEY
from tests.stack_fixtures import GatewayProcess

pytestmark = pytest.mark.integration

WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "enum": ["Oslo", "Lima", "Pune"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "days"],
    "additionalProperties": False}
CLOCK = {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
         "required": ["zone"], "additionalProperties": False}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast",
                                      "parameters": WEATHER, "strict": True}},
    {"type": "function", "function": {"name": "get_time", "parameters": CLOCK}},
]
SCHEMAS = {"get_weather": WEATHER, "get_time": CLOCK}
ASK = [{"role": "user", "content": "Will it rain in Oslo this week?"}]


def _valid(name: str, arguments: str) -> None:
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


def test_a_named_call_has_valid_arguments(openai_sdk: openai.OpenAI, served_model: str) -> None:
    for seed in range(3):
        completion = openai_sdk.chat.completions.create(
            model=served_model, messages=ASK, tools=TOOLS, max_tokens=64, temperature=1.0, seed=seed,  # type: ignore[arg-type]
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
        _valid(call.function.name, call.function.arguments)


def test_a_required_call_streams_id_and_name_first_then_arguments(openai_sdk: openai.OpenAI,
                                                                   served_model: str) -> None:
    for seed in range(3):
        kwargs: dict[str, Any] = dict(model=served_model, messages=ASK, tools=TOOLS, tool_choice="required",
                                      parallel_tool_calls=False, max_tokens=96, temperature=1.0, seed=seed)
        whole = openai_sdk.chat.completions.create(**kwargs)
        calls = whole.choices[0].message.tool_calls or []
        assert calls and whole.choices[0].finish_reason == "tool_calls"
        for call in calls:
            _valid(call.function.name, call.function.arguments)
        chunks = list(openai_sdk.chat.completions.create(**kwargs, stream=True))
        streamed: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                if d.index not in streamed:
                    assert d.id and d.function and d.function.name, "id and name come first"
                    streamed[d.index] = {"name": d.function.name, "arguments": d.function.arguments or ""}
                else:
                    assert not d.id and d.function and not d.function.name
                    streamed[d.index]["arguments"] += d.function.arguments or ""
        assert [chunks[-1].choices[0].finish_reason] == ["tool_calls"]
        assert [(s["name"], s["arguments"]) for s in streamed.values()] == \
            [(c.function.name, c.function.arguments) for c in calls], "same seed: stream equals whole"


def test_parallel_calls_are_each_valid_and_off_makes_one(openai_sdk: openai.OpenAI, served_model: str) -> None:
    for seed in range(4):
        completion = openai_sdk.chat.completions.create(
            model=served_model, messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False,  # type: ignore[arg-type]
            max_tokens=96, temperature=1.0, seed=seed)
        assert len(completion.choices[0].message.tool_calls or []) == 1
        several = openai_sdk.chat.completions.create(
            model=served_model, messages=ASK, tools=TOOLS, tool_choice="required",  # type: ignore[arg-type]
            max_tokens=160, temperature=1.0, seed=seed).choices[0]
        calls = several.message.tool_calls or []
        whole = calls if several.finish_reason == "tool_calls" else calls[:-1]  # length: the last is cut
        assert calls and all(_valid(c.function.name, c.function.arguments) is None for c in whole)


def test_a_tool_result_continues_the_conversation(openai_sdk: openai.OpenAI, served_model: str) -> None:
    first = openai_sdk.chat.completions.create(
        model=served_model, messages=ASK, tools=TOOLS, max_tokens=64, temperature=1.0, seed=1,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = (first.choices[0].message.tool_calls or [])[0]
    messages: list[Any] = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                           {"role": "tool", "tool_call_id": call.id, "content": '{"rain": true}'}]
    answer = openai_sdk.chat.completions.create(model=served_model, messages=messages, tools=TOOLS,  # type: ignore[arg-type]
                                                tool_choice="none", max_tokens=8, temperature=0)
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls
    assert answer.usage and first.usage and answer.usage.prompt_tokens > first.usage.prompt_tokens


def test_auto_answers_text_or_calls_and_stream_equals_whole(openai_sdk: openai.OpenAI, served_model: str) -> None:
    kwargs: dict[str, Any] = dict(model=served_model, messages=ASK, tools=TOOLS, max_tokens=24, temperature=0)
    whole = openai_sdk.chat.completions.create(**kwargs).choices[0]
    chunks = list(openai_sdk.chat.completions.create(**kwargs, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == (whole.message.content or "") and whole.finish_reason in ("stop", "length", "tool_calls")


@pytest.mark.parametrize(("extra", "field"), [
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"type": "string", "pattern": "(unclosed"}}}}}], "tool_choice": "required"}, "tools"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
])
def test_bad_tool_requests_are_400_naming_the_field(openai_sdk: openai.OpenAI, served_model: str,
                                                    extra: dict[str, Any], field: str) -> None:
    body: dict[str, Any] = {"messages": ASK, **extra}
    with pytest.raises(openai.BadRequestError) as info:
        openai_sdk.chat.completions.create(model=served_model, max_tokens=8, **body)
    assert field in str(info.value), info.value


RESPONSES_TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Weather forecast",
                               "parameters": WEATHER, "strict": True},
                              {"type": "function", "name": "get_time", "parameters": CLOCK}]


def test_responses_function_call_then_its_output_continues_by_previous_response_id(
        openai_sdk: openai.OpenAI, served_model: str) -> None:
    first = openai_sdk.responses.create(model=served_model, input="Rain in Oslo?", tools=RESPONSES_TOOLS,
                                        tool_choice={"type": "function", "name": "get_weather"},
                                        max_output_tokens=64, temperature=1.0, extra_body={"seed": 3})
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    _valid(call.name, call.arguments)
    assert first.tool_choice.type == "function" and len(first.tools) == 2  # type: ignore[union-attr]
    wrong = {"type": "function_call_output", "call_id": "call_nope", "output": "x"}
    with pytest.raises(openai.BadRequestError, match="tool_call_id"):
        openai_sdk.responses.create(model=served_model, previous_response_id=first.id, input=[wrong])  # type: ignore[list-item]
    second = openai_sdk.responses.create(
        model=served_model, previous_response_id=first.id, tools=RESPONSES_TOOLS, tool_choice="none",
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"rain": true}'}],
        max_output_tokens=8, temperature=0)
    assert second.output_text and [i.type for i in second.output] == ["message"]
    assert second.conversation is not None and first.conversation is not None
    items = openai_sdk.conversations.items.list(first.conversation.id, order="asc").data
    assert [i.type for i in items] == ["message", "function_call", "function_call_output", "message"]
    assert openai_sdk.responses.retrieve(first.id).output[0].type == "function_call"
    assert openai_sdk.responses.retrieve(second.id).output_text == second.output_text


def test_responses_stream_function_call_argument_events(openai_sdk: openai.OpenAI, served_model: str) -> None:
    kwargs: dict[str, Any] = dict(model=served_model, input="Time?", tools=RESPONSES_TOOLS, tool_choice="required",
                                  parallel_tool_calls=False, max_output_tokens=64, temperature=1.0,
                                  extra_body={"seed": 4})
    events = list(openai_sdk.responses.create(**kwargs, stream=True))
    kinds = [e.type for e in events]
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")  # type: ignore[union-attr]
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.index("response.output_item.added") < kinds.index("response.function_call_arguments.delta")
    assert deltas == done.arguments  # type: ignore[union-attr]
    final = events[-1].response  # type: ignore[union-attr]
    (call,) = final.output
    assert call.type == "function_call" and call.arguments == deltas
    _valid(call.name, call.arguments)
    whole = openai_sdk.responses.create(**kwargs)
    assert [(c.name, c.arguments) for c in whole.output] == [(call.name, call.arguments)]  # type: ignore[union-attr]


def test_grpc_chat_calls_a_tool_and_a_tool_result_continues_the_session(
        gateway_process: GatewayProcess, capsys: pytest.CaptureFixture[str]) -> None:
    tools = [function_tool("get_weather", "Weather forecast", WEATHER), function_tool("get_time", "", CLOCK)]
    with ChatClient(gateway_process.address, ALICE_KEY, timeout=120) as client:
        deltas: list[Any] = []
        stream = client.chat_stream("Rain in Oslo?", tools=tools, tool_choice="get_weather", max_tokens=64,
                                    temperature=1.0, seed=2)
        for event in stream:
            if event.WhichOneof("event") == "delta":
                deltas.extend(event.delta.tool_calls)
            elif event.WhichOneof("event") == "final":
                final = event.final
        (call,) = final.tool_calls
        assert final.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS and final.text == ""
        assert (deltas[0].id, deltas[0].name) == (call.id, "get_weather")
        assert "".join(d.arguments for d in deltas) == call.arguments
        _valid(call.name, call.arguments)
        first = client.chat("Rain in Oslo?", tools=tools, tool_choice="required", parallel_tool_calls=False,
                            max_tokens=64, temperature=1.0, seed=3)
        (call,) = first.tool_calls
        with pytest.raises(grpc.RpcError) as info:
            client.chat("", first.session_id, tool_results=[("call_other", "x")], tools=tools)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "tool_call_id" in (info.value.details() or "")
        second = client.chat("", first.session_id, tool_results=[(call.id, '{"rain": false}')], tools=tools,
                             tool_choice="none", max_tokens=8, temperature=0)
        assert second.text and not second.tool_calls
        _, turns = client.history(first.session_id)
        assert [t.role for t in turns] == [common_pb2.ROLE_USER, common_pb2.ROLE_ASSISTANT, common_pb2.ROLE_TOOL,
                                           common_pb2.ROLE_ASSISTANT]
        assert list(turns[1].tool_calls) == [call] and turns[2].tool_call_id == call.id
        assert turns[1].token_count > 0 and turns[2].token_count > 0  # both count in the token budget
        from chatstack.chat_cli import ChatRepl

        repl = ChatRepl(client, {"max_tokens": 64, "tools": tools, "tool_choice": "required",
                                 "parallel_tool_calls": False, "temperature": 1.0}, "")
        repl.handle("Time in Paris?")
        assert "-> get_" in capsys.readouterr().out and repl.open_calls
        repl.options["tool_choice"] = "none"
        repl.handle("/result 12:00")
        repl.handle("/history")
        history = capsys.readouterr().out
        assert "tool [call_" in history and "      -> get_" in history


def test_the_results_of_parallel_calls_continue_as_one_exchange(openai_sdk: openai.OpenAI, served_model: str,
                                                                gateway_process: GatewayProcess) -> None:
    for seed in range(12):  # the random model ends its array of calls on its own after 2+ calls for some seeds
        first = openai_sdk.responses.create(model=served_model, input="Weather and time?", tools=RESPONSES_TOOLS,
                                            tool_choice="required", max_output_tokens=160, temperature=1.0,
                                            extra_body={"seed": seed})
        calls = [item for item in first.output if item.type == "function_call"]
        if first.status == "completed" and len(calls) >= 2 and all(c.status == "completed" for c in calls):
            break
    assert len(calls) >= 2, "no seed gave an answer of several whole calls"
    outputs: list[Any] = [{"type": "function_call_output", "call_id": c.call_id, "output": f"result {i}"}
                          for i, c in enumerate(calls)]
    with pytest.raises(openai.BadRequestError, match="tool_call_id"):  # the same call answered twice
        openai_sdk.responses.create(model=served_model, previous_response_id=first.id,
                                    input=[outputs[0], outputs[0]])
    second = openai_sdk.responses.create(model=served_model, previous_response_id=first.id, input=outputs,
                                         tools=RESPONSES_TOOLS, tool_choice="none", max_output_tokens=8,
                                         temperature=0)
    assert second.output_text and openai_sdk.responses.retrieve(second.id).output_text == second.output_text
    assert first.conversation is not None
    items = openai_sdk.conversations.items.list(first.conversation.id, order="asc").data
    assert [i.type for i in items] == ["message", *["function_call"] * len(calls),
                                       *["function_call_output"] * len(calls), "message"]
    with ChatClient(gateway_process.address, ALICE_KEY, timeout=120) as client:
        session_id = first.conversation.id.removeprefix("conv_")
        removed = client.undo(session_id).removed_turns  # the last exchange: the answer and every result
        assert [t.role for t in removed] == [common_pb2.ROLE_ASSISTANT, *[common_pb2.ROLE_TOOL] * len(calls)]
        grpc_results = [(c.call_id, "again") for c in calls]
        again = client.chat("", session_id, tool_results=grpc_results, max_tokens=8, temperature=0)
        assert again.text and [t.role for t in client.history(session_id)[1]][-len(calls) - 1:] == \
            [*[common_pb2.ROLE_TOOL] * len(calls), common_pb2.ROLE_ASSISTANT]
