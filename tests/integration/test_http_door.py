"""The HTTP door under the gRPC door's discipline (issue 23), over the real stack: body limit,
errors in OpenAI's shape (the framework's own too), request ids, deadlines, cancel on
disconnect for non-streamed calls, [DONE] after an in-stream error, refused unsupported fields,
and a keep-alive that outlasts common clients'."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from chatstack.core.process import wait_until
from tests.integration.conftest import ALICE_KEY
from tests.scrape import engine_idle
from tests.stack_fixtures import GatewayProcess

pytestmark = pytest.mark.integration
AUTH = {"authorization": f"Bearer {ALICE_KEY}"}
LIMIT = 16 << 20  # the gateway's default max_request_bytes
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def base(gateway_process: GatewayProcess) -> str:
    return f"http://127.0.0.1:{gateway_process.http_port}"


@pytest.fixture(scope="module")
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def model(http: httpx.Client) -> str:
    return str(http.get("/v1/models").json()["data"][0]["id"])


def openai_error(response: httpx.Response, status: int, code: str, param: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return dict(error)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def read_status(sock: socket.socket) -> int:
    """One whole response's status (its body read by its content-length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split(b" ", 2)[1])


def test_a_600_mb_body_is_refused_413_at_once_without_being_read(gateway_process: GatewayProcess) -> None:
    pid = gateway_process.proc.proc.pid  # type: ignore[union-attr]
    before = rss_bytes(pid)
    started = time.monotonic()
    sock = raw_request(gateway_process.http_port, (
        b"POST /v1/conversations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + ALICE_KEY.encode() + b"\r\ncontent-length: 600000000\r\n\r\n{\"items\": ["))
    with sock:
        assert read_status(sock) == 413
    refused_after = time.monotonic() - started
    assert refused_after < 1.0

    # Chunked, so no length is declared: read up to the limit, then 413 (no more than that held).
    sock = raw_request(gateway_process.http_port, (
        b"POST /v1/conversations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + ALICE_KEY.encode() + b"\r\ntransfer-encoding: chunked\r\n\r\n"))
    chunk = b"a" * (1 << 20)
    sent = 0
    with sock:
        try:
            while sent < 600 << 20:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what the test wants
        assert read_status(sock) == 413
    assert sent < 64 << 20, f"the server read {sent >> 20} MiB before refusing"
    grown = rss_bytes(pid) - before
    print(f"600 MB body: 413 after {refused_after * 1e3:.1f} ms; chunked: 413 after {sent >> 20} MiB sent, "
          f"gateway RSS grew {grown / 2**20:.1f} MiB (limit {LIMIT >> 20} MiB)")
    assert grown <= LIMIT, (before, rss_bytes(pid))


def test_the_frameworks_own_errors_are_in_openais_shape_with_a_code(http: httpx.Client) -> None:
    openai_error(http.get("/v1/no-such-route"), 404, "unknown_route")
    openai_error(http.delete("/v1/chat/completions"), 405, "method_not_allowed")
    openai_error(http.post("/v1/chat/completions", content=b"{not json",
                           headers={"content-type": "application/json"}), 400, "invalid_json", "body")
    openai_error(http.post("/v1/chat/completions", json={"model": "m"}), 400, "invalid_request", "messages")
    openai_error(http.get("/v1/models", headers={"authorization": "Bearer nope"}), 401, "invalid_api_key")
    named = http.get("/v1/no-such-route", headers={"x-request-id": "my-id-1"})
    assert named.headers["x-request-id"] == "my-id-1"


def test_a_lone_surrogate_is_a_400_naming_the_field(http: httpx.Client, model: str) -> None:
    body = f'{{"model": "{model}", "messages": [{{"role": "user", "content": "a\\ud800b"}}]}}'
    error = openai_error(http.post("/v1/chat/completions", content=body.encode(),
                                   headers={"content-type": "application/json"}), 400, "invalid_request")
    assert error["param"] == "messages[0].content"


@pytest.mark.parametrize(("field", "value", "param"), [
    ("tools", [{"type": "web_search"}], "tools.0.type"),  # function tools only
    ("tool_choice", "required", "tool_choice"),  # without tools
    ("logit_bias", {"5": 10}, "logit_bias"),
    ("functions", [{"name": "f"}], "functions"),
    ("frobnicate", 1, "frobnicate"),
])
def test_a_field_that_would_change_the_answer_is_refused_naming_it(http: httpx.Client, model: str, field: str,
                                                                   value: object, param: str) -> None:
    body = {"model": model, "messages": HELLO, "max_tokens": 4, field: value}
    openai_error(http.post("/v1/chat/completions", json=body), 400, "invalid_request", param)


def test_fields_that_do_not_change_the_answer_are_accepted(http: httpx.Client, model: str) -> None:
    body = {"model": model, "messages": HELLO, "max_tokens": 4, "user": "u1", "metadata": {"k": "v"},
            "store": False, "tools": [], "tool_choice": "none", "response_format": {"type": "text"},
            "logit_bias": {}, "parallel_tool_calls": True}
    assert http.post("/v1/chat/completions", json=body).status_code == 200
    responses = {"model": model, "input": "hi", "max_output_tokens": 4, "store": False, "user": "u",
                 "metadata": {}, "text": {"format": {"type": "text"}}, "tools": []}
    assert http.post("/v1/responses", json=responses).status_code == 200
    # structured output is served (tests/integration/test_openai_structured.py); a format that
    # names no schema is refused naming the field
    openai_error(http.post("/v1/responses", json={**responses, "text": {"format": {"type": "json_schema"}}}),
                 400, "invalid_request", "text.format.schema")


def test_a_json_schema_format_without_its_schema_is_refused_naming_it(base: str, model: str) -> None:
    with openai.OpenAI(base_url=f"{base}/v1", api_key=ALICE_KEY, max_retries=0) as sdk, \
            pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=model, messages=HELLO, response_format={"type": "json_schema"},
                                    max_tokens=8)  # type: ignore[typeddict-item]
    assert refused.value.param == "response_format.json_schema"


# The tiny random model samples its end-of-text token early in about a third of 1,000-token
# answers; the tests below need an answer still running at a moment, so each tries again (up to
# ATTEMPTS times) when the answer ended first.
ATTEMPTS = 5


def test_a_stream_cut_by_its_deadline_ends_with_an_error_event_then_done(http: httpx.Client, model: str) -> None:
    body = {"model": model, "messages": HELLO, "max_tokens": 1000, "stream": True}
    for _ in range(ATTEMPTS):
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"x-chatstack-timeout": "0.6"}) as r:
            assert r.status_code == 200
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        if "error" in lines[-2]:
            break
    error = json.loads(lines[-2][6:])
    assert error["error"]["code"] == "deadline_exceeded", error


def test_a_non_streamed_call_past_its_deadline_is_a_504_at_the_deadline(http: httpx.Client, model: str) -> None:
    for _ in range(ATTEMPTS):
        started = time.monotonic()
        response = http.post("/v1/chat/completions", json={"model": model, "messages": HELLO, "max_tokens": 1000},
                             headers={"x-chatstack-timeout": "0.5"})
        if response.status_code != 200:
            break
    assert time.monotonic() - started < 2.5
    openai_error(response, 504, "deadline_exceeded")


def test_a_non_streamed_response_whose_client_left_is_not_stored_and_its_generation_stops(
        http: httpx.Client, model: str, gateway_process: GatewayProcess,
        generation_service: tuple[str, int]) -> None:
    for _ in range(ATTEMPTS):
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        payload = json.dumps({"model": model, "input": "Tell me a long story.", "max_output_tokens": 1000,
                              "conversation": conversation}).encode()
        sock = raw_request(gateway_process.http_port, (
            b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer "
            + ALICE_KEY.encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload))
        wait_until(lambda s=sock: _readable(s) or not engine_idle(generation_service[1]), 30,
                   "the generation to start (or the answer to come)")
        if not _readable(sock):
            break
        sock.close()  # it answered before the engine was seen busy: try again
    sock.close()  # the client goes away mid-generation
    wait_until(lambda: engine_idle(generation_service[1]), 30, "the engine to abort the request")
    wait_until(lambda: http.get(f"/v1/conversations/{conversation}/items").json()["data"] == [], 10,
               "the exchange to be rolled back")


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_an_idle_keep_alive_connection_outlives_uvicorns_default_5_seconds(
        gateway_process: GatewayProcess) -> None:
    request = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
    with raw_request(gateway_process.http_port, request) as sock:
        assert read_status(sock) == 200
        # Idle: the server closing the connection would make it readable (EOF) within 6 s; with
        # uvicorn's default keep-alive it did after 5 s.
        assert not select.select([sock], [], [], 6.0)[0], "the server closed an idle connection within 6 s"
        sock.sendall(request)  # the same connection, as a pooled client reuses it
        assert read_status(sock) == 200
