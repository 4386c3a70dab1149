"""TokenizerEngine against in-process `tokenizers`, and its validation messages."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from chatstack.core.chat_message import ChatMessage as M
from chatstack.core.chat_message import FunctionTool, ToolCall
from chatstack.core.errors import InvalidRequest
from chatstack.tokenizer.engine import TokenizerEngine, TokenizerLimits


@pytest.fixture(scope="module")
def engine(lm_dir: Path) -> TokenizerEngine:
    return TokenizerEngine.from_dir(lm_dir, limits=TokenizerLimits(
        max_batch_items=4, max_text_chars=50, max_sequence_tokens=10, max_messages=3))


@pytest.fixture(scope="module")
def reference(lm_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(lm_dir / "tokenizer.json"))


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(st.text(max_size=50), min_size=1, max_size=4), special=st.booleans())
def test_encode_equals_in_process_tokenizers(
    engine: TokenizerEngine, reference: Tokenizer, texts: list[str], special: bool
) -> None:
    got = engine.encode(texts, special, return_offsets=True)
    want = reference.encode_batch(texts, add_special_tokens=special)
    assert [g.ids for g in got] == [w.ids for w in want]
    assert [g.offsets for g in got] == [list(w.offsets) for w in want]


def test_decode_round_trips_plain_text(engine: TokenizerEngine) -> None:
    ids = engine.encode(["ka to ri"], add_special_tokens=True)[0].ids
    assert engine.decode([ids], skip_special_tokens=True) == ["ka to ri"]
    assert engine.decode([ids], skip_special_tokens=False)[0].startswith("<s>")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.encode([], True), "texts: empty batch"),
        (lambda e: e.encode(["a"] * 5, True), "5 items exceed the limit of 4"),
        (lambda e: e.encode(["ok", "x" * 51], True), "texts[1]: 51 characters"),
        (lambda e: e.count(["x" * 51], True), "texts[0]: 51 characters"),
        (lambda e: e.decode([[1], [1, 5000]], True), "sequences[1].ids[1]: id 5000 is outside"),
        (lambda e: e.decode([list(range(11))], True), "sequences[0]: 11 ids exceed"),
        (lambda e: e.apply_chat_template([M("user", "a"), M("robot", "b")], True),
         "messages[1].role: robot"),
        (lambda e: e.apply_chat_template([], True), "messages: empty"),
        (lambda e: e.apply_chat_template([M("user", "a")] * 4, True), "messages: 4 exceed"),
        (lambda e: e.apply_chat_template([M("user", "a")], True, [0, 1]), "count_messages[1]: 1 is not"),
        (lambda e: e.apply_chat_template([M("user", "a")], True, [0, 0]), "count_messages[1]: 0 is not"),
    ],
)
def test_bad_input_names_the_offending_item(engine: TokenizerEngine, call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(engine)


def test_chat_template_renders_roles_and_generation_prompt(engine: TokenizerEngine) -> None:
    prompt, ids, counts = engine.apply_chat_template([M("system", "be brief"), M("user", "hi")], True, [1, 0])
    assert counts == engine.count(["hi", "be brief"], False)
    assert prompt == "<s><|system|>\nbe brief<|end|>\n<|user|>\nhi<|end|>\n<|assistant|>\n"
    assert ids[0] == engine.info().special_tokens[0][2]  # BOS written once, by the template
    assert ids.count(ids[0]) == 1


def test_chat_template_renders_tools_calls_and_results(engine: TokenizerEngine) -> None:
    tool = FunctionTool("get_weather", "Weather of a city",
                        '{"type": "object", "properties": {"city": {"type": "string"}}}')
    messages = [M("user", "rain?"), M("assistant", "", (ToolCall("c1", "get_weather", '{"city": "Oslo"}'),)),
                M("tool", "wet", tool_call_id="c1")]
    prompt, _, _ = engine.apply_chat_template(messages, True, (), [tool])
    assert '{"type": "function", "function": {"name": "get_weather"' in prompt
    assert '<|assistant|>\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call><|end|>' \
        in prompt
    assert "<|user|>\n<tool_response>\nwet\n</tool_response><|end|>\n<|assistant|>\n" in prompt


def test_a_tool_whose_schema_is_not_json_is_named(engine: TokenizerEngine) -> None:
    with pytest.raises(InvalidRequest, match=r"tools\[1\].parameters_json: not valid JSON"):
        engine.apply_chat_template([M("user", "a")], True, (), [FunctionTool("a"), FunctionTool("b", "", "{")])


def test_info_reports_vocab_and_specials(engine: TokenizerEngine) -> None:
    info = engine.info()
    assert info.vocab_size == 2048 and info.max_length_tokens == 2048
    assert ("bos", "<s>", 1) in info.special_tokens and info.has_chat_template


def test_an_encode_response_over_the_message_limit_is_refused_before_it_is_built(lm_dir: Path) -> None:
    engine = TokenizerEngine.from_dir(lm_dir, limits=TokenizerLimits(max_response_bytes=64 * 1024))
    text = "the quick brown fox " * 1000
    assert engine.encode([text], add_special_tokens=False)  # ids alone fit
    with pytest.raises(InvalidRequest, match="return_offsets"):
        engine.encode([text], add_special_tokens=False, return_offsets=True)
