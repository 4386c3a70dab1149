"""Fuzzing the gateway's HTTP door (the OpenAI-compatible API) over real HTTP.

Requests come from a seeded `random.Random` (a profile is reproducible): typed bodies built from
the pydantic request models' own fields (valid, out of range, wrong type, missing; plus the
fields chatstack refuses and unknown ones), raw bytes (truncated and invalid JSON, invalid
UTF-8, lone surrogates, deep nesting, huge numbers), bodies past the size limit, odd headers
(auth, content type, timeouts, request ids), every route with every method, and path ids of all
sorts (another owner's, unicode, very long, percent-encoded).

The oracles: no response >= 500; every error body in OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` with an `x-request-id`; a stream ends with
`data: [DONE]`; no request over its deadline; the gateway still answers after every request.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.openai_api.http_scope import client_timeout
from chatstack.gateway.openai_api.schemas import NEUTRAL

ROUTES: list[tuple[str, str]] = [
    ("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/responses"),
    ("GET", "/v1/responses/{id}"), ("DELETE", "/v1/responses/{id}"), ("POST", "/v1/responses/{id}/feedback"),
    ("POST", "/v1/conversations"), ("GET", "/v1/conversations/{id}"), ("DELETE", "/v1/conversations/{id}"),
    ("GET", "/v1/conversations/{id}/items"), ("GET", "/health"),
]
METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD")
TEXTS = ("hi", "", " ", "Say hello.", "日本語 🙂", "a\u0000b", "x" * 5000, "\\ud800", "<|eot_id|>", "\n\n")
REQUEST_TIMEOUT = 60.0  # the fuzzer's own patience: a request taking longer is a hang
DEFAULT_DEADLINE, MAX_DEADLINE = GatewayConfig().default_deadline_seconds, GatewayConfig().max_deadline_seconds
DEADLINE_SLACK = 2.0


@dataclass
class HttpCase:
    """One request to send."""

    method: str
    path: str
    body: bytes | None
    headers: dict[str, bytes]
    kind: str

    def describe(self) -> str:
        """One line for a violation report."""
        body = "" if self.body is None else f" {len(self.body)}B {self.body[:120]!r}"
        return f"[{self.kind}] {self.method} {self.path[:100]}{body}"


@dataclass
class HttpBooks:
    """Statuses per route kind and the violations found."""

    statuses: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    requests: int = 0

    def lines(self) -> list[str]:
        """The summary."""
        out = [f"chatstack HTTP fuzz: {self.requests} requests; statuses: "
               + " ".join(f"{s}={n}" for s, n in sorted(self.statuses.items()))]
        out.append(f"{len(self.violations)} violations" + (":" if self.violations else ""))
        return out + [f"  {v}" for v in self.violations[:50]]


HTTP_BOOKS = HttpBooks()


class HttpFuzzer:
    """Generates and sends HTTP fuzz cases (see module docstring)."""

    def __init__(self, base_url: str, api_key: str, model: str, seed: int, known_ids: dict[str, str],
                 books: HttpBooks = HTTP_BOOKS) -> None:
        self.base_url, self.api_key, self.model = base_url, api_key, model
        self.rng = random.Random(seed)
        self.known_ids = known_ids  # kind -> an id of another owner's resource
        self.books = books
        self.client = httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    # -- cases --------------------------------------------------------------------------------
    def headers(self) -> dict[str, bytes]:
        rng = self.rng
        h = {"content-type": b"application/json"}
        r = rng.random()
        if r < 0.85:
            h["authorization"] = f"Bearer {self.api_key}".encode()
        elif r < 0.9:
            h["authorization"] = rng.choice((b"Bearer", b"Basic abc", b"Bearer " + b"k" * 5000, b"bearer x",
                                             "Bearer ü".encode()))
        if rng.random() < 0.1:
            h["content-type"] = rng.choice((b"text/plain", b"application/x-www-form-urlencoded", b"", b"json"))
        if rng.random() < 0.1:  # never short enough to expire a fuzz call legitimately
            h["x-chatstack-timeout"] = rng.choice((b"abc", b"-1", b"0", b"nan", b"inf", b"1e308", b"30"))
        if rng.random() < 0.1:
            h["x-request-id"] = rng.choice((b"r" * 300, b"id with spaces", "ü-id".encode(), b"\xff\xfe", b""))
        return h

    def path_id(self) -> str:
        rng = self.rng
        return rng.choice([*self.known_ids.values(), "resp_x", "conv_x", "", "..", "%2e%2e", "a" * 3000,
                           "日本", "resp_" + "f" * 40, "%00", "resp_%ZZ", "conv_" + "0" * 32])

    def value(self, annotation: str) -> Any:
        """A value for a field, valid or not."""
        rng = self.rng
        return rng.choice([None, True, 0, -1, 1, 4, 2**63, 1e308, -0.5, 2.5, "", rng.choice(TEXTS), [], {},
                           [rng.choice(TEXTS)], {"a": 1}, "auto", "disabled", "up", "text"])

    def tools(self, responses: bool) -> list[Any]:
        """Function tools, most of them valid, in the route's shape (Responses: flat)."""
        rng = self.rng
        schemas = [{"type": "object", "properties": {"x": {"type": "integer", "maximum": 9}}, "required": ["x"]},
                   {"type": "object", "properties": {"s": {"type": "string", "pattern": "(unclosed"}}},
                   {"type": "object", "properties": {"s": {"type": "string", "maxLength": 3}}}, {}, None, [],
                   {"type": "array"}, "not a schema"]
        out: list[Any] = []
        for _ in range(rng.randint(0, 3)):
            function = {"name": rng.choice(("f", "g", "bad name", "", "x" * 80, "日本")),
                        "parameters": rng.choice(schemas)}
            tool = {"type": rng.choice(("function", "function", "web_search")),
                    **(function if responses else {"function": function})}
            out.append(tool)
        return out

    def tool_choice(self, responses: bool) -> Any:
        rng = self.rng
        name = rng.choice(("f", "g", "nope"))
        named = {"type": "function", "name": name} if responses else {"type": "function", "function": {"name": name}}
        return rng.choice(("none", "auto", "required", "any", named, None, 3))

    def message(self) -> dict[str, Any]:
        rng = self.rng
        m: dict[str, Any] = {"role": rng.choice(("user", "user", "assistant", "system", "developer", "tool", "x")),
                             "content": rng.choice([rng.choice(TEXTS), [{"type": "text", "text": "hi"}],
                                                    [{"type": "image_url", "image_url": {"url": "x"}}], None, 5])}
        if rng.random() < 0.1:
            m[rng.choice(("tool_calls", "name", "tool_call_id", "refusal", "weird"))] = rng.choice([[], "n", None, 1])
        if rng.random() < 0.15:
            m["tool_calls"] = [{"id": rng.choice(("call_1", "", "x" * 300)), "type": "function",
                                "function": {"name": "f", "arguments": rng.choice(('{"x": 1}', "{", ""))}}]
        if m["role"] == "tool" and rng.random() < 0.7:
            m["tool_call_id"] = rng.choice(("call_1", "", "日本"))
        return m

    def typed_body(self, route: str) -> dict[str, Any]:
        """A body shaped like the route's request model, with some fields off."""
        rng = self.rng
        if route.endswith("/chat/completions"):
            body: dict[str, Any] = {"model": self.model, "messages": [self.message() for _ in range(rng.randint(0, 3))],
                                    "max_tokens": rng.choice((1, 4, 8, None, 0, -1, 10**9))}
            optional = ("temperature", "top_p", "stop", "seed", "n", "best_of", "logprobs", "top_logprobs",
                        "presence_penalty", "frequency_penalty", "stream", "stream_options",
                        "max_completion_tokens", "user")
        elif route == "/v1/responses":
            body = {"model": self.model, "input": rng.choice([rng.choice(TEXTS), [self.message()], []]),
                    "max_output_tokens": rng.choice((1, 4, 8, None, 0))}
            optional = ("instructions", "conversation", "previous_response_id", "store", "truncation", "stream",
                        "temperature", "top_p", "seed")
        elif route == "/v1/conversations":
            body = {"items": [self.message() for _ in range(rng.randint(0, 3))]}
            optional = ("metadata",)
        else:
            body = {}
            optional = ("rating", "preferred_candidate", "reason")
        for name in rng.sample(optional, rng.randint(0, min(4, len(optional)))):
            body[name] = self.value(name)
        if route in ("/v1/responses", "/v1/chat/completions") and rng.random() < 0.3:
            responses = route == "/v1/responses"
            body["tools"] = self.tools(responses)
            for name, value in (("tool_choice", self.tool_choice(responses)),
                                ("parallel_tool_calls", rng.choice((True, False, None, "x")))):
                if rng.random() < 0.6:
                    body[name] = value
            if responses and rng.random() < 0.3:
                body["input"] = [{"type": "function_call_output", "call_id": rng.choice(("call_1", "")),
                                  "output": rng.choice(TEXTS)}]
        if body.get("stream") is True and "max_tokens" in body:
            body["max_tokens"] = rng.choice((1, 4))
        if rng.random() < 0.2:
            name = rng.choice([*NEUTRAL, "frobnicate", "model"])
            body[name] = self.value(name)
        if rng.random() < 0.1 and "model" in body:
            body["model"] = rng.choice(("gpt-4o", "", self.model.upper()))
        return body

    def raw_body(self) -> bytes:
        rng = self.rng
        valid = json.dumps({"model": self.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        return rng.choice([
            b"", b"{", b"null", b"[]", b"42", b'"str"', valid.encode()[: rng.randint(1, len(valid))],
            b"\xff\xfe\x00garbage", bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))),
            b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
            b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
            b'{"model": "m", "max_tokens": 1' + b"0" * 5000 + b"}",
            valid.replace('"hi"', '"' + "é" * 100 + '"').encode("latin-1", "replace"),
            b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "max_tokens": 3}',
        ])

    def case(self) -> HttpCase:
        """The next request."""
        rng = self.rng
        method, template = rng.choice(ROUTES)
        kind = "typed"
        if rng.random() < 0.1:
            method, kind = rng.choice(METHODS), "method"
        path = template.replace("{id}", self.path_id()) if "{id}" in template else template
        if rng.random() < 0.05:
            path, kind = rng.choice(("/v1/nope", "/", "/v1", "/v1/models/x", "/v1//chat/completions")), "route"
        body: bytes | None = None
        if method in ("POST", "PUT", "PATCH"):
            r = rng.random()
            if r < 0.7:
                body = json.dumps(self.typed_body(template), ensure_ascii=rng.random() < 0.5).encode()
            elif r < 0.97:
                body, kind = self.raw_body(), "raw"
            else:
                body, kind = b'{"items": [' + b'{"role":"user","content":"x"},' * 800_000 + b"]}", "huge"
        return HttpCase(method, path, body, self.headers(), kind)

    # -- running ------------------------------------------------------------------------------
    def send(self, case: HttpCase) -> None:
        """Send one case and check the oracles."""
        started = time.monotonic()
        try:
            with self.client.stream(case.method, case.path, content=case.body, headers=case.headers) as response:
                body = b"".join(response.iter_bytes())
        except httpx.TimeoutException:
            self.books.violations.append(f"hang (> {REQUEST_TIMEOUT:.0f}s): {case.describe()}")
            return
        except httpx.HTTPError as exc:
            if case.kind == "huge":  # the server answered 413 and closed before all was sent
                self.books.statuses["413(closed)"] += 1
                return
            self.books.violations.append(f"transport error {exc!r}: {case.describe()}")
            return
        finally:
            self.books.requests += 1
        elapsed = time.monotonic() - started
        status = response.status_code
        self.books.statuses[str(status)] += 1
        problems = []
        if status >= 500:
            problems.append(f"status {status}")
        if not response.headers.get("x-request-id"):
            problems.append("no x-request-id")
        if status >= 400 and case.method != "HEAD":
            problems += _error_shape(body)
        if status == 200 and response.headers.get("content-type", "").startswith("text/event-stream") \
                and case.path.endswith("/chat/completions") and not body.rstrip().endswith(b"data: [DONE]"):
            problems.append("a chat-completions stream not ended by [DONE]")
        deadline = client_timeout([(k.encode(), v) for k, v in case.headers.items()], DEFAULT_DEADLINE, MAX_DEADLINE)
        if elapsed > deadline + DEADLINE_SLACK:
            problems.append(f"took {elapsed:.1f}s, past its deadline of {deadline:g}s")
        for problem in problems:
            self.books.violations.append(f"{problem}: {case.describe()} -> {status} {body[:200]!r}")

    def alive(self) -> bool:
        """The gateway still answers."""
        try:
            return self.client.get("/health", timeout=30).status_code == 200
        except httpx.HTTPError:
            return False

    def run(self, requests: int) -> None:
        """Send `requests` cases; stop at the first request after which the gateway is gone."""
        for _ in range(requests):
            case = self.case()
            self.send(case)
            if not self.alive():
                self.books.violations.append(f"gateway gone after: {case.describe()}")
                return


def _error_shape(body: bytes) -> list[str]:
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return ["error body not in OpenAI's shape"]
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return [f"error object keys {sorted(error) if isinstance(error, dict) else type(error)}"]
    if not isinstance(error["message"], str) or not error["code"]:
        return ["error without a message or code"]
    return []
