"""Tool-call parsers: the calls parsed from a stream equal those parsed from the whole text,
however the text is cut (every split point; deltas of 1-16 tokens of the tiny tokenizer), for
every format, and malformed markup degrades to content as documented."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from chatstack.core.chat_message import ToolCall
from chatstack.gateway.tool_parsers import (
    ArgumentsParser,
    HermesParser,
    JsonArrayParser,
    Llama3JsonParser,
    ToolCallCollector,
    ToolCallParser,
)

ARGS = '{"city": "Zürich \\"old\\" town", "days": [1, 2.5e1, -3], "opts": {"unit": "c", "x": null}}'
# (format, recorded model output, content expected, calls expected as (name, arguments))
RECORDED: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("hermes", f'Let me check.<tool_call>\n{{"name": "get_weather", "arguments": {ARGS}}}\n</tool_call>',
     "Let me check.", [("get_weather", ARGS)]),
    ("hermes", '<tool_call>{"arguments": {"q": "a<b"}, "name": "search"}</tool_call>'
               '<tool_call>{"name": "noop", "arguments": {}}</tool_call> done <tool',
     " done <tool", [("search", '{"q": "a<b"}'), ("noop", "{}")]),
    ("hermes", 'a < b <tool_call>{"nam": 1}</tool_call>', 'a < b <tool_call>{"nam": 1}</tool_call>', []),
    ("hermes", '<tool_call>{"name": "f", "arguments": {"n": 12', "", [("f", '{"n": 12')]),
    ("llama3_json", f'{{"name": "get_weather", "parameters": {ARGS}}}; {{"name": "g", "parameters": 7}}',
     "", [("get_weather", ARGS), ("g", "7")]),
    ("llama3_json", '<|python_tag|>{"name": "f", "parameters": {"a": "}"}}', "", [("f", '{"a": "}"}')]),
    ("llama3_json", "  The answer is {not a call}", "  The answer is {not a call}", []),
    ("json_array", f'[{{"name": "get_weather", "arguments": {ARGS}}}, {{"name": "h", "arguments": {{}}}}]',
     "", [("get_weather", ARGS), ("h", "{}")]),
    ("arguments", ARGS, "", [("pinned", ARGS)]),
]
FORMATS: dict[str, Callable[[], ToolCallParser]] = {
    "hermes": HermesParser, "llama3_json": Llama3JsonParser, "json_array": JsonArrayParser,
    "arguments": lambda: ArgumentsParser("pinned"),
}


def _run(fmt: str, pieces: Iterable[str]) -> tuple[str, list[ToolCall], list[str]]:
    counter = itertools.count()
    parser = FORMATS[fmt]()
    parser._call_id = lambda: f"call_{next(counter)}"  # ids in order, to compare runs
    collector, content, first = ToolCallCollector(), "", []
    for piece in [*pieces, None]:
        out = parser.feed(piece) if piece is not None else parser.finish()
        content += out.content
        for d in collector.keep(out.calls):
            if d.name:
                first.append(d.name)
                assert d.arguments == "" and d.id, "a call's first delta is its id and name"
    return content, collector.calls, first


@pytest.fixture(scope="module")
def tokenizer(lm_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(lm_dir / "tokenizer.json"))


def _token_pieces(tokenizer: Tokenizer, text: str, size: int) -> list[str]:
    """`text` cut at token boundaries into pieces of `size` tokens (as the engine streams)."""
    offsets = [start for start, _ in tokenizer.encode(text, add_special_tokens=False).offsets]
    cuts = [*offsets[::size], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(cuts) if b > a] or [text]


@pytest.mark.parametrize(("fmt", "text", "content", "calls"), RECORDED)
def test_whole_text_parses_as_recorded(fmt: str, text: str, content: str, calls: list[tuple[str, str]]) -> None:
    got_content, got_calls, _ = _run(fmt, [text])
    assert got_content == content
    assert [(c.name, c.arguments) for c in got_calls] == calls
    for c in got_calls:
        if fmt != "hermes" or '"n": 12' not in c.arguments:
            json.loads(c.arguments)


@pytest.mark.parametrize(("fmt", "text", "content", "calls"), RECORDED)
def test_streaming_equals_non_streaming_at_every_cut(tokenizer: Tokenizer, fmt: str, text: str,
                                                     content: str, calls: list[tuple[str, str]]) -> None:
    whole = _run(fmt, [text])
    for cut in range(len(text) + 1):
        assert _run(fmt, [text[:cut], text[cut:]]) == whole, f"split at {cut}"
    for size in range(1, 17):
        assert _run(fmt, _token_pieces(tokenizer, text, size)) == whole, f"{size} tokens per delta"
    assert _run(fmt, list(text)) == whole


def test_collector_keeps_only_the_first_call_when_parallel_calls_are_off() -> None:
    parser, collector = JsonArrayParser(), ToolCallCollector(limit=1)
    collector.keep(parser.feed('[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]').calls)
    assert [c.name for c in collector.calls] == ["a"]
