"""The gateway's OpenAI-compatible HTTP API, driven by the official `openai` SDK over the real
stack (tokenizer, generation, reward, session, gateway on loopback)."""

from __future__ import annotations

import openai
import pytest

from chatstack.catalog import SESSION
from chatstack.client import ChatClient
from tests.integration.conftest import ALICE_KEY, BOB_KEY
from tests.scrape import engine_idle, metric_labelled, rpc_calls
from tests.stack_fixtures import GatewayProcess

pytestmark = pytest.mark.integration

HELLO = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def client(openai_sdk: openai.OpenAI) -> openai.OpenAI:
    return openai_sdk


@pytest.fixture(scope="module")
def model(served_model: str) -> str:
    return served_model


def test_a_chat_completion_whole_and_streamed_give_the_same_answer(client: openai.OpenAI, model: str) -> None:
    whole = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, temperature=0.7, seed=3)
    choice = whole.choices[0]
    assert whole.object == "chat.completion" and whole.model == model
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert whole.usage is not None and whole.usage.prompt_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    chunks = list(client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, temperature=0.7,
                                                 seed=3, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_n_choices_and_best_of_ranked_by_the_reward_model(client: openai.OpenAI, model: str) -> None:
    plain = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, n=3, temperature=1.0)
    assert [c.index for c in plain.choices] == [0, 1, 2]
    assert all(c.message.content for c in plain.choices)

    ranked = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, n=2, temperature=1.0,
                                            extra_body={"best_of": 4})
    rewards = [c.model_extra["reward"] for c in ranked.choices]  # type: ignore[index]
    assert len(rewards) == 2 and rewards == sorted(rewards, reverse=True)
    assert ranked.usage is not None and ranked.usage.completion_tokens >= 4  # all four candidates count


def test_logprobs_and_sampling_fields(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=5, temperature=0.5, top_p=0.9,
        presence_penalty=0.5, frequency_penalty=0.5, stop=["\n\n"], logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content) == reply.usage.completion_tokens  # type: ignore[union-attr]
    assert all(len(position.top_logprobs) == 2 for position in content)


@pytest.mark.parametrize(("kwargs", "error", "param"), [
    ({"max_tokens": 100_000}, openai.BadRequestError, "max_tokens"),
    ({"temperature": 3}, openai.BadRequestError, "temperature"),
    ({"messages": []}, openai.BadRequestError, "messages"),
    ({"model": "gpt-4o"}, openai.NotFoundError, "model"),
    ({"n": 2, "extra_body": {"best_of": 1}}, openai.BadRequestError, "best_of"),
    ({"messages": [{"role": "user", "content": "x" * 20_000}] * 20}, openai.BadRequestError, "messages"),
])
def test_errors_surface_as_the_sdks_own_exceptions(client: openai.OpenAI, model: str, kwargs: dict,
                                                    error: type[Exception], param: str) -> None:
    args = {"model": model, "messages": HELLO, **kwargs}
    with pytest.raises(error) as raised:
        client.chat.completions.create(**args)
    assert raised.value.body["param"] == param, raised.value.body  # type: ignore[attr-defined]


def test_a_wrong_key_is_an_authentication_error(gateway_process: GatewayProcess) -> None:
    with openai.OpenAI(base_url=f"http://127.0.0.1:{gateway_process.http_port}/v1", api_key="nope",
                       max_retries=0) as stranger, pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def test_a_stream_closed_midway_aborts_the_generation(client: openai.OpenAI, model: str,
                                                      generation_service: tuple[str, int]) -> None:
    from chatstack.core.process import wait_until

    stream = client.chat.completions.create(model=model, messages=HELLO, max_tokens=1000, temperature=1.0,
                                            stream=True)
    for _, chunk in zip(range(3), stream, strict=False):
        assert chunk.choices
    stream.close()
    wait_until(lambda: engine_idle(generation_service[1]), 30, "the engine aborted the request")


def test_grpc_and_http_answer_alike_for_the_same_seed_and_history(client: openai.OpenAI, model: str,
                                                                  gateway_process: GatewayProcess) -> None:
    with ChatClient(gateway_process.address, ALICE_KEY, timeout=120) as grpc_client:
        over_grpc = grpc_client.chat("Say hello.", system_prompt="You are terse.", max_tokens=12,
                                     temperature=0.7, seed=11)
    over_http = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, temperature=0.7,
                                               seed=11)
    assert over_http.choices[0].message.content == over_grpc.text
    assert metric_labelled(gateway_process.metrics_port, "chatstack_gateway_stage_duration_seconds_count",
                           'stage="generation",transport="http"') >= 1



def test_greedy_best_of_and_n_answer_once_over_http_as_over_grpc(client: openai.OpenAI, model: str,
                                                                 gateway_process: GatewayProcess) -> None:
    # Greedy decoding has one answer: HTTP generates it once and gives it n times (it used to ask the
    # generation service for n greedy candidates and answer 400 naming `sampling.n`, a field the
    # caller never sent), as gRPC Chat answers greedy best-of once.
    with ChatClient(gateway_process.address, ALICE_KEY, timeout=120) as grpc_client:
        over_grpc = grpc_client.chat("Say hello.", system_prompt="You are terse.", max_tokens=12,
                                     temperature=0.0, best_of=4)
    plain = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, temperature=0)
    best = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, temperature=0,
                                          extra_body={"best_of": 4})
    twice = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, temperature=0, n=2,
                                           extra_body={"best_of": 3})
    texts = {over_grpc.text, plain.choices[0].message.content, best.choices[0].message.content,
             *(c.message.content for c in twice.choices)}
    assert len(texts) == 1 and [c.index for c in twice.choices] == [0, 1]
    assert best.choices[0].model_extra["reward"] == twice.choices[1].model_extra["reward"]  # type: ignore[index]

# -- Responses and Conversations: stored on the session stack ----------------------------------------
def _texts(client: openai.OpenAI, conversation: str) -> list[tuple[str, str]]:
    items = client.conversations.items.list(conversation, order="asc", limit=100)
    return [(item.role, item.content[0].text) for item in items]  # type: ignore[union-attr]


def test_a_conversation_over_four_turns_and_its_items_paged(client: openai.OpenAI, model: str) -> None:
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "system", "content": "You are terse."}], metadata={"topic": "demo"})
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "demo"}
    answers = []
    for turn in range(4):
        reply = client.responses.create(model=model, input=f"question {turn}", conversation=conversation.id,
                                        max_output_tokens=8)
        assert reply.status == "completed" and reply.output_text
        assert reply.conversation is not None and reply.conversation.id == conversation.id
        answers.append(reply.output_text)
    stored = _texts(client, conversation.id)
    assert stored == [pair for turn in range(4) for pair in (("user", f"question {turn}"),
                                                              ("assistant", answers[turn]))]
    # pages of 3, newest first, followed by the SDK through `after`
    newest_first = [item.id for item in client.conversations.items.list(conversation.id, limit=3)]
    page = client.conversations.items.list(conversation.id, limit=3)
    assert len(page.data) == 3 and page.has_more
    assert newest_first == [i.id for i in client.conversations.items.list(conversation.id, order="asc",
                                                                          limit=100)][::-1]
    assert client.conversations.retrieve(conversation.id).id == conversation.id


def test_previous_response_id_chains_and_an_older_one_forks(client: openai.OpenAI, model: str) -> None:
    first = client.responses.create(model=model, input="first", instructions="Be brief.", max_output_tokens=8)
    second = client.responses.create(model=model, input="second", previous_response_id=first.id,
                                     max_output_tokens=8)
    assert second.conversation.id == first.conversation.id  # type: ignore[union-attr]
    fork = client.responses.create(model=model, input="instead", previous_response_id=first.id,
                                   max_output_tokens=8)
    assert fork.conversation.id != first.conversation.id  # type: ignore[union-attr]
    assert [t for _, t in _texts(client, fork.conversation.id)] == [  # type: ignore[union-attr]
        "first", first.output_text, "instead", fork.output_text]
    assert [t for _, t in _texts(client, first.conversation.id)] == [  # type: ignore[union-attr]
        "first", first.output_text, "second", second.output_text]
    assert client.responses.retrieve(second.id).output_text == second.output_text


def test_truncation_auto_drops_the_oldest_turns_and_disabled_refuses(client: openai.OpenAI, model: str) -> None:
    long = " ".join(["story"] * 160)  # under the session fixture's 1 KiB per turn
    conversation = client.conversations.create(items=[
        {"type": "message", "role": role, "content": long} for role in ("user", "assistant") * 10])
    before = _texts(client, conversation.id)
    # twenty turns of 160 words (3.2k tokens or more) do not fit the model's 2k window whole
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=model, input="and then?", conversation=conversation.id,
                                max_output_tokens=8, truncation="disabled")
    assert refused.value.body["param"] == "input"  # type: ignore[index]
    assert _texts(client, conversation.id) == before  # refused before anything was stored
    reply = client.responses.create(model=model, input="and then?", conversation=conversation.id,
                                    max_output_tokens=8, truncation="auto")
    assert reply.status == "completed"
    assert _texts(client, conversation.id)[:20] == before  # the window left some out; the history keeps them


def test_store_false_keeps_nothing(client: openai.OpenAI, model: str) -> None:
    reply = client.responses.create(model=model, input="just once", store=False, max_output_tokens=8)
    assert reply.output_text and reply.conversation is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)


def test_responses_get_delete_and_owners(client: openai.OpenAI, model: str,
                                         gateway_process: GatewayProcess) -> None:
    first = client.responses.create(model=model, input="one", max_output_tokens=8)
    second = client.responses.create(model=model, input="two", previous_response_id=first.id,
                                     max_output_tokens=8)
    with pytest.raises(openai.BadRequestError):
        client.responses.delete(first.id)  # not the top of its stack
    with openai.OpenAI(base_url=f"http://127.0.0.1:{gateway_process.http_port}/v1", api_key=BOB_KEY,
                       max_retries=0) as bob:
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(second.id)
        with pytest.raises(openai.NotFoundError):
            bob.conversations.retrieve(second.conversation.id)  # type: ignore[union-attr]
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)
    stored = client.responses.retrieve(first.id)
    assert stored.output_text == first.output_text
    assert stored.usage is not None and first.usage is not None
    assert (stored.usage.input_tokens, stored.usage.output_tokens) == (first.usage.input_tokens,
                                                                       first.usage.output_tokens)
    client.conversations.delete(first.conversation.id)  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(first.conversation.id)  # type: ignore[union-attr]


def test_a_streamed_response_and_one_closed_midway(client: openai.OpenAI, model: str,
                                                   generation_service: tuple[str, int]) -> None:
    from chatstack.core.process import wait_until

    events = list(client.responses.create(model=model, input="stream it", max_output_tokens=12, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    done = events[-1].response  # type: ignore[union-attr]
    assert deltas == done.output_text and done.conversation is not None
    before = _texts(client, done.conversation.id)

    stream = client.responses.create(model=model, input="a long one", conversation=done.conversation.id,
                                     max_output_tokens=1000, temperature=1.0, stream=True)
    for _, event in zip(range(6), stream, strict=False):
        assert event.type != "error"
    stream.close()
    wait_until(lambda: engine_idle(generation_service[1]), 30, "the engine aborted the request")
    wait_until(lambda: _texts(client, done.conversation.id) == before, 30,  # type: ignore[union-attr]
               "the cancelled exchange rolled back")


# The session reads on a request's path (writes and background annotations aside).
SESSION_READS = ("GetSession", "GetContext", "PeekTurns", "ListTurns", "GetTurns")


def test_a_chain_of_200_responses_costs_the_same_session_reads_at_its_end_as_at_its_start(
        client: openai.OpenAI, model: str, session_service: tuple[str, int]) -> None:
    # previous_response_id is looked up by id (GetTurns), not by reading the whole history: the
    # session reads of one request do not grow with the chain (they used to: O(N) per request).
    previous, reads = None, {}
    for i in range(1, 201):
        for attempt in range(5):  # the tiny model's answer can decode to nothing: refused, nothing stored
            before = rpc_calls(session_service[1], SESSION.name)
            try:
                reply = client.responses.create(model=model, input=f"step {i}.{attempt}", max_output_tokens=4,
                                                truncation="auto",
                                                **({"previous_response_id": previous} if previous else {}))
                break
            except openai.BadRequestError as refused:
                assert "empty answer" in str(refused)
        assert reply.status == "completed"
        if i in (10, 200):
            after = rpc_calls(session_service[1], SESSION.name)
            reads[i] = {m: after.get(m, 0) - before.get(m, 0) for m in SESSION_READS if after.get(m, 0) > before.get(m, 0)}
        previous = reply.id
    assert reads[10] == reads[200] and reads[200].get("GetTurns") == 1, reads
    assert "ListTurns" not in reads[200], reads
    assert client.responses.retrieve(previous).id == previous
