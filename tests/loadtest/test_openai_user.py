"""OpenAIUser: the server-sent-event parsing and the two stream readers (unit), and the user itself
run by Locust against a fake of the gateway's OpenAI API on loopback, which streams the way the
gateway does and answers some requests with each kind of failure (a non-200, an `error` event,
a stream cut short). The run against the real gateway is in test_locust.py.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadtest.sse import ChatCompletionStream, ResponseStream, SseEvent, SseParser, StreamError
from tests.integration.conftest import ALICE_KEY
from tests.loadtest.test_locust import LOCUSTFILE, REPO, loadtest_env, stats_rows

MODEL = "fake-model"

# -- server-sent events -------------------------------------------------------------------------

STREAM = ("\ufeff: a comment, then an event with a name\r\n"
          "event: response.output_text.delta\r\n"
          "data: {\"delta\": \"h\u00e9\"}\r\n\r\n"
          "data:no space\n"
          "data:  two spaces keep one\n"
          "id: 7\n"
          "retry: 100\n"
          "unknown: ignored\n\n"
          "event: ignored-without-data\n\n"
          "data\r\r"  # a field name alone: empty data; CR line ends
          "data: [DONE]\n\n"
          "data: a partial event at the end").encode()
EVENTS = [SseEvent("response.output_text.delta", '{"delta": "h\u00e9"}'),
          SseEvent("message", "no space\n two spaces keep one", "7"),
          SseEvent("message", "", "7"),
          SseEvent("message", "[DONE]", "7")]


def test_sse_events_are_parsed_whole_or_from_any_split_of_the_bytes() -> None:
    whole = SseParser()
    assert whole.feed(STREAM) == EVENTS and whole.pending  # the partial event is not dispatched
    for size in (1, 2, 3, 7):  # chunk edges inside CRLF, inside the two-byte é, inside field names
        parser = SseParser()
        events = [e for i in range(0, len(STREAM), size) for e in parser.feed(STREAM[i:i + size])]
        assert events == EVENTS, size
    parser = SseParser()
    assert parser.feed(b"data: x\r") == [] and parser.feed(b"\n") == [] and parser.feed(b"\r\n") == [
        SseEvent("message", "x")]  # CR, then LF in the next chunk: one line end, not two


def chat_chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> SseEvent:
    """A `chat.completion.chunk` as the gateway sends it."""
    delta = {"content": content} if content is not None else {}
    choices = [] if "usage" in extra else [{"index": 0, "delta": delta, "finish_reason": finish,
                                             "logprobs": None}]
    return SseEvent("message", json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                                           "model": MODEL, "choices": choices, **extra}))


DONE = SseEvent("message", "[DONE]")
USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_a_chat_completion_stream_counts_content_and_needs_its_end() -> None:
    stream = ChatCompletionStream(expect_usage=True)
    events = [chat_chunk(""), chat_chunk("Hel"), chat_chunk("lo"), chat_chunk(finish="length"),
              chat_chunk(usage=USAGE), DONE]
    assert [stream.add(e) for e in events] == [False, True, True, False, False, False]
    stream.finish()
    assert (stream.text, stream.deltas, stream.finish_reasons, stream.usage) == ("Hello", 2, ["length"], USAGE)
    with pytest.raises(StreamError, match="after data: \\[DONE\\]"):
        stream.add(chat_chunk("late"))

    for events, message in [([chat_chunk("a"), chat_chunk(finish="stop")], "without data: \\[DONE\\]"),
                            ([chat_chunk("a"), DONE], "without a finish_reason"),
                            ([chat_chunk("a"), chat_chunk(finish="stop"), DONE], "without the usage chunk")]:
        stream = ChatCompletionStream(expect_usage=True)
        for event in events:
            stream.add(event)
        with pytest.raises(StreamError, match=message):
            stream.finish()


@pytest.mark.parametrize(("event", "message"), [
    # the gateway's error after the first chunk: a chunk of its own with OpenAI's error object
    (SseEvent("message", '{"error": {"message": "generation: unavailable", "type": "service_unavailable"}}'),
     "^service_unavailable: generation: unavailable$"),
    (SseEvent("error", '{"message": "overloaded"}'), "^overloaded$"),
    (SseEvent("message", "not json"), "data is not JSON"),
    (SseEvent("message", '{"object": "chat.completion"}'), "not a chat.completion.chunk"),
])
def test_a_chat_completion_stream_fails_on_an_error_event_or_a_malformed_one(event: SseEvent, message: str) -> None:
    stream = ChatCompletionStream()
    stream.add(chat_chunk("a"))
    with pytest.raises(StreamError, match=message):
        stream.add(event)


def response_event(kind: str, **fields: Any) -> SseEvent:
    """A Responses stream event as the gateway sends it (`event:` and a `type` in the data)."""
    return SseEvent(kind, json.dumps({"type": kind, "sequence_number": 1, **fields}))


def response_json(status: str, response_id: str = "resp_a_b") -> dict[str, Any]:
    return {"id": response_id, "object": "response", "status": status, "conversation": {"id": "conv_a"},
            "error": None, "output": []}


def test_a_response_stream_gives_the_id_to_continue_from_and_fails_on_errors() -> None:
    stream = ResponseStream()
    events = [response_event("response.created", response=response_json("in_progress")),
              response_event("response.in_progress", response=response_json("in_progress")),
              response_event("response.output_text.delta", delta="Hi"),
              response_event("response.output_text.delta", delta=""),
              response_event("response.output_text.delta", delta=" there"),
              response_event("response.output_text.done", text="Hi there"),
              response_event("response.completed", response=response_json("completed"))]
    assert [stream.add(e) for e in events] == [False, False, True, False, True, False, False]
    stream.finish()
    assert (stream.response_id, stream.conversation_id, stream.text, stream.deltas) == (
        "resp_a_b", "conv_a", "Hi there", 2)
    assert stream.response is not None and stream.response["status"] == "completed"

    broken = ResponseStream()
    broken.add(events[0])
    assert broken.conversation_id == "conv_a"  # known from the first event: the conversation can be deleted
    with pytest.raises(StreamError, match=r"^503: generation: unavailable$"):
        broken.add(response_event("error", code="503", message="generation: unavailable", param=None))
    with pytest.raises(StreamError, match=r"response\.failed: server_error: boom"):
        ResponseStream().add(response_event("response.failed", response={
            **response_json("failed"), "error": {"type": "server_error", "message": "boom"}}))
    cut = ResponseStream()
    cut.add(events[0])
    cut.add(events[2])
    with pytest.raises(StreamError, match=r"without response.completed \(after: response.created, "
                                          r"response.output_text.delta\)"):
        cut.finish()
    unnamed = ResponseStream()  # the event type only in the data (no `event:` line) is understood too
    unnamed.add(SseEvent("message", json.dumps({"type": "response.completed", "response": response_json("completed")})))
    unnamed.finish()


# -- OpenAIUser against a fake gateway ----------------------------------------------------------


@dataclass
class FakeOpenAI:
    """What the fake gateway was asked, and the protocol mistakes the load test made."""

    chats: int = 0
    chat_failures: dict[str, int] = field(default_factory=dict)
    responses: int = 0
    latest: dict[str, str] = field(default_factory=dict)  # conversation -> its latest response id
    turns: dict[str, int] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


CHAT_MODES = ("ok", "503", "error event", "ok", "no [DONE]")  # by request number, in turn
RESPONSE_ERROR_EVERY = 7  # every 7th response fails with an `error` event after response.created


def fake_gateway(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    """A handler speaking the gateway's OpenAI API (HTTP/1.1, chunked SSE) for one key and one model."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # each event leaves at once (no 40 ms wait for a delayed ACK)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def problem(self, text: str) -> None:
            with fake.lock:
                fake.problems.append(text)

        def send_json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {ALICE_KEY}":
                return True
            self.problem(f"{self.command} {self.path}: Authorization {self.headers.get('Authorization')!r}")
            self.send_json(401, {"error": {"message": "bad key", "type": "authentication_error"}})
            return False

        def start_stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def write(self, text: str, pause: float = 0.0) -> None:
            """One HTTP chunk; an event may span two (the load test must reassemble it)."""
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(pause)

        def end_stream(self) -> None:
            self.wfile.write(b"0\r\n\r\n")

        def do_GET(self) -> None:
            if self.authorized():
                if self.path == "/v1/models":
                    self.send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
                else:
                    self.send_json(404, {"error": {"message": self.path, "type": "not_found_error"}})

        def do_DELETE(self) -> None:
            if not self.authorized():
                return
            conversation = self.path.removeprefix("/v1/conversations/")
            with fake.lock:
                known = conversation in fake.turns and conversation not in fake.deleted
                if known:
                    fake.deleted.append(conversation)
            if not known:
                self.problem(f"DELETE {self.path}: not an open conversation")
                self.send_json(404, {"error": {"message": "no such conversation", "type": "not_found_error"}})
                return
            self.send_json(200, {"id": conversation, "object": "conversation.deleted", "deleted": True})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self.authorized():
                return
            if body.get("model") != MODEL or body.get("stream") is not True:
                self.problem(f"POST {self.path}: model or stream: {body}")
            if self.path == "/v1/chat/completions":
                self.chat(body)
            elif self.path == "/v1/responses":
                self.respond(body)
            else:
                self.send_json(404, {"error": {"message": self.path, "type": "not_found_error"}})

        def chat(self, body: dict[str, Any]) -> None:
            if body.get("max_tokens") != 4 or body.get("stream_options") != {"include_usage": True} \
                    or body["messages"][-1]["role"] != "user":
                self.problem(f"chat.completions body: {body}")
            with fake.lock:
                mode = CHAT_MODES[fake.chats % len(CHAT_MODES)]
                fake.chats += 1
                fake.chat_failures[mode] = fake.chat_failures.get(mode, 0) + 1
            if mode == "503":
                time.sleep(0.05)  # every chat request takes >= 50 ms, this one too
                self.send_json(503, {"error": {"message": "replicas: none ready", "type": "service_unavailable"}})
                return
            base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": MODEL}

            def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
                return f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n"

            self.start_stream()
            time.sleep(0.02)  # the time to first token
            first = chunk([{"index": 0, "delta": {"role": "assistant", "content": "He"}, "finish_reason": None}])
            self.write(": keep-alive\n\n" + first[:25])
            self.write(first[25:], pause=0.01)
            for piece in ("l", "lo", "!"):
                self.write(chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]), pause=0.01)
            if mode == "error event":
                self.write(f"data: {json.dumps({'error': {'message': 'upstream gone', 'type': 'server_error'}})}\n\n")
            elif mode == "ok":
                self.write(chunk([{"index": 0, "delta": {}, "finish_reason": "length"}]))
                self.write(chunk([], usage=USAGE) + "data: [DONE]\n\n")
            self.end_stream()

        def respond(self, body: dict[str, Any]) -> None:
            previous = body.get("previous_response_id")
            if body.get("max_output_tokens") != 4 or not isinstance(body.get("input"), str):
                self.problem(f"responses body: {body}")
            with fake.lock:
                fake.responses += 1
                number = fake.responses
                if previous:
                    conversation = next((c for c, latest in fake.latest.items() if latest == previous), "")
                    if not conversation or conversation in fake.deleted:
                        fake.problems.append(f"previous_response_id {previous}: not a conversation's latest")
                        conversation = f"conv_{number}"
                else:
                    conversation = f"conv_{number}"
                fake.turns[conversation] = fake.turns.get(conversation, 0) + 1
            response_id = f"resp_{number}"

            def event(kind: str, **fields: Any) -> str:  # CRLF line ends, as some servers send
                return f"event: {kind}\r\ndata: {json.dumps({'type': kind, **fields})}\r\n\r\n"

            def response(status: str) -> dict[str, Any]:
                return {"id": response_id, "object": "response", "status": status, "error": None,
                        "conversation": {"id": conversation}, "previous_response_id": previous}

            self.start_stream()
            self.write(event("response.created", response=response("in_progress")), pause=0.02)
            if number % RESPONSE_ERROR_EVERY == 0:
                self.write(event("error", code="503", message="generation: unavailable", param=None))
                self.end_stream()
                return
            for piece in ("Hi", " there"):
                self.write(event("response.output_text.delta", delta=piece), pause=0.01)
            with fake.lock:
                fake.latest[conversation] = response_id
            self.write(event("response.output_text.done", text="Hi there"))
            self.write(event("response.completed", response=response("completed")))
            self.end_stream()

    return Handler


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up when Locust stops are no error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    """The fake gateway on a free loopback port: (its record, its base URL)."""
    fake = FakeOpenAI()
    server = QuietServer(("127.0.0.1", 0), fake_gateway(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def failures(prefix: Path) -> dict[tuple[str, str], int]:
    """`<prefix>_failures.csv` as (request name, error) -> occurrences."""
    with open(f"{prefix}_failures.csv", newline="") as f:
        return {(row["Name"], row["Error"]): int(row["Occurrences"]) for row in csv.DictReader(f)}


def test_openai_user_streams_chains_responses_deletes_conversations_and_fails_what_failed(
    fake_openai: tuple[FakeOpenAI, str], tmp_path: Path
) -> None:
    fake, base_url = fake_openai
    prefix = tmp_path / "openai"
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "3", "-r", "3",
               "-t", "4s", "--stop-timeout", "20", "--csv", str(prefix), "--only-summary", "OpenAIUser",
               "--openai-base-url", base_url + "/", "--think-time", "0.01,0.03", "--max-tokens", "4",
               "--openai-turns", "2,3"]
    done = subprocess.run(command, cwd=REPO, env=loadtest_env(), capture_output=True, text=True, timeout=90)
    output = done.stderr[-6000:]
    assert done.returncode == 1, output  # Locust's status when a request failed (as some had to)
    assert fake.problems == [], fake.problems
    rows = stats_rows(prefix)

    def count(name: str, column: str = "Request Count") -> int:
        return int(rows[name][column]) if name in rows else 0

    # Every request the fake answered is one entry, and each stream that sent text has a TTFT entry,
    # except calls Locust cut short when it stopped (a user woken from its wait as Locust killed it:
    # `(unfinished)` entries, not failures, that the fake may or may not have received).
    chat, chat_cut = count("openai chat.completions"), count("openai chat.completions (unfinished)")
    assert count("openai models") == 3 and count("openai models", "Failure Count") == 0
    assert chat <= fake.chats <= chat + chat_cut and chat >= len(CHAT_MODES), output
    assert count("openai chat.completions (unfinished)", "Failure Count") == 0
    streamed = fake.chats - fake.chat_failures.get("503", 0)
    assert streamed - chat_cut <= count("openai chat.completions TTFT") <= streamed
    errors = failures(prefix)
    for mode, text in (("503", "HTTP 503: service_unavailable: replicas: none ready"),
                       ("error event", "server_error: upstream gone"),
                       ("no [DONE]", "stream ended without data: [DONE]")):
        seen = sum(n for (name, error), n in errors.items() if name == "openai chat.completions" and text in error)
        assert fake.chat_failures[mode] - chat_cut <= seen <= fake.chat_failures[mode], (mode, errors)
    # a stream is timed to its end, not to its headers (every chat request takes the fake >= 50 ms, its
    # stream's headers come at once), its TTFT to the first text (20 ms)
    assert float(rows["openai chat.completions"]["Min Response Time"]) >= 50
    assert 20 <= float(rows["openai chat.completions TTFT"]["Min Response Time"]) < 50

    # Responses: turns chained by previous_response_id (the fake checks each is a conversation's
    # latest), 2..3 turns a conversation, every conversation deleted, the `error` events failed
    responses, responses_cut = count("openai responses"), count("openai responses (unfinished)")
    failed = fake.responses // RESPONSE_ERROR_EVERY
    assert responses <= fake.responses <= responses + responses_cut and responses >= 4, output
    assert failed - responses_cut <= count("openai responses", "Failure Count") <= failed
    assert count("openai responses TTFT") >= fake.responses - failed - responses_cut
    assert any(n >= 2 for n in fake.turns.values()) and max(fake.turns.values()) <= 3, fake.turns
    assert set(fake.deleted) <= set(fake.turns) and len(fake.deleted) == len(set(fake.deleted))
    assert len(fake.turns) - len(fake.deleted) <= responses_cut, (fake.deleted, fake.turns)
    assert count("openai conversations.delete") == len(fake.deleted)
    assert count("openai conversations.delete", "Failure Count") == 0


def test_a_non_loopback_openai_base_url_from_the_environment_is_refused_before_any_request(tmp_path: Path) -> None:
    env = {**loadtest_env(), "CHATSTACK_LOADTEST_OPENAI_BASE_URL": "http://10.0.0.5:8080/v1"}
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1", "-t", "2s",
               "--csv", str(tmp_path / "refused"), "OpenAIUser"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert re.search(r"--openai-base-url http://10\.0\.0\.5:8080/v1: not a loopback address", done.stderr), \
        done.stderr[-3000:]
    assert not (tmp_path / "refused_stats.csv").exists() or "openai" not in (
        tmp_path / "refused_stats.csv").read_text()
