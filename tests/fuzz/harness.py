"""Sending fuzz calls over real gRPC as raw bytes, and keeping the books: status codes per
service (the summary table) and distinct oracle violations with their smallest example."""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatstack.core.process import wait_until
from chatstack.core.retry_policy import retry_channel_options
from tests.fuzz.domain import FuzzCall, Rpc, health_name
from tests.fuzz.protobuf_strategies import message_class

# Deadlines per service: generous for the model services on 2 cores, short for the rest.
DEADLINES = {"tokenizer": 10.0, "session": 10.0, "reward": 20.0, "generation": 30.0, "chat": 30.0,
             "safety": 20.0}
DEADLINE_SLACK = 2.0
# As a well-behaved client: read-only calls that race a server's max-connection-age GOAWAY are
# retried (chatstack.core.retry_policy), so such a race is not reported as an outage.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
                   *retry_channel_options()]


@dataclass
class Outcome:
    """What one call returned."""

    code: str
    details: str
    elapsed: float
    responses: list[Message]
    raw_responses: list[bytes]
    parse_error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.code == "OK"


class Target:
    """One service under test: its channel, health name and deadline."""

    def __init__(self, service: str, address: str) -> None:
        self.service = service
        self.address = address
        self.deadline = DEADLINES[service]
        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def serving(self) -> bool:
        """Whether the service's health check answers SERVING."""
        try:
            reply = self.health.Check(health_pb2.HealthCheckRequest(service=health_name(self.service)), timeout=5)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def invoke(self, call: FuzzCall) -> Outcome:
        """Send the call's bytes as they are (no client-side validation) and read every response."""
        raw: list[bytes] = []
        start = time.monotonic()
        try:
            if call.rpc.server_streaming:
                stream = self.channel.unary_stream(call.rpc.path)
                raw.extend(stream(call.payload, metadata=call.identity.metadata, timeout=self.deadline))
            else:
                unary = self.channel.unary_unary(call.rpc.path)
                raw.append(unary(call.payload, metadata=call.identity.metadata, timeout=self.deadline))
            code, details = "OK", ""
        except grpc.RpcError as err:
            code, details = err.code().name, err.details() or ""
        elapsed = time.monotonic() - start
        responses, parse_error = parse_responses(call.rpc, raw)
        return Outcome(code, details, elapsed, responses, raw, parse_error)


def parse_responses(rpc: Rpc, raw: list[bytes]) -> tuple[list[Message], str]:
    """The responses as messages, and an error if one does not parse."""
    cls = message_class(rpc.output)
    parsed = []
    for item in raw:
        try:
            parsed.append(cls.FromString(item))
        except DecodeError as err:
            return parsed, f"response does not parse as {rpc.output.full_name}: {err}"
    return parsed, ""


# -- the books -------------------------------------------------------------------------------
@dataclass
class Violation:
    """One oracle failure of one call."""

    oracle: str  # e.g. "status INTERNAL", "hang", "leak"
    detail: str


@dataclass
class ViolationRecord:
    """A distinct violation: how often it happened and its smallest example."""

    oracle: str
    rpc: str
    detail: str
    count: int = 0
    example: str = ""
    example_size: int = -1

    def line(self) -> str:
        """One line for the report."""
        return f"[{self.oracle}] {self.rpc} x{self.count}: {self.detail}\n    e.g. {self.example}"


def normalize(detail: str) -> str:
    """A violation's detail with ids, numbers and quoted values folded, to group alike failures."""
    folded = re.sub(r"[0-9a-f]{16,}", "<id>", detail)
    folded = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", folded)
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", folded)[:160]


LOG_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d |\(\w+ pid=)")  # the start of a log record


class ServerLogs:
    """The services' log files (the fixtures' log_dir): the exception behind an INTERNAL."""

    def __init__(self, log_dir: Path | None) -> None:
        self.log_dir = log_dir

    def cause(self, details: str, wait: float = 1.0) -> str | None:
        """`<service log>: <exception line>` of the request id in `details`, if logged."""
        match = re.search(r"request id ([^)\s]+)", details)
        if match is None or self.log_dir is None:
            return None
        needle = f"[{match.group(1)}]"
        with contextlib.suppress(TimeoutError):  # not logged (yet): no cause to show
            wait_until(lambda: self._find(needle) is not None, wait, f"the log line of {needle}")
        return self._find(needle)

    def _find(self, needle: str) -> str | None:
        assert self.log_dir is not None
        for path in sorted(self.log_dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if needle in line and "ERROR" in line:
                    return f"{path.stem}: {exception_line(lines, i + 1)}"
        return None


def exception_line(lines: list[str], start: int) -> str:
    """The last unindented line of the traceback starting at `start` (the exception raised)."""
    last = ""
    for line in lines[start:start + 200]:
        if LOG_RECORD.match(line):
            break
        if line and not line[0].isspace() and not line.startswith(("Traceback", "The above", "During handling")):
            last = line
    return last[:300] or "(no traceback)"


@dataclass
class Books:
    """Status codes per service and per RPC, and distinct violations (one test run's worth)."""

    codes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    rpc_codes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    hangs: Counter[str] = field(default_factory=Counter)  # per service
    down: Counter[str] = field(default_factory=Counter)  # per service: calls after which it was not SERVING
    violations: dict[tuple[str, str, str], ViolationRecord] = field(default_factory=dict)

    def record(self, call: FuzzCall, outcome: Outcome) -> None:
        """Count one call's status code."""
        self.codes[call.service][outcome.code] += 1
        self.rpc_codes[call.rpc.label][outcome.code] += 1

    def add(self, call: FuzzCall, violation: Violation) -> ViolationRecord:
        """Record a violation; keeps the smallest request as the example."""
        if violation.oracle == "hang":
            self.hangs[call.service] += 1
        elif violation.oracle == "not serving":
            self.down[call.service] += 1
        key = (violation.oracle, call.rpc.label, normalize(violation.detail))
        record = self.violations.setdefault(key, ViolationRecord(violation.oracle, call.rpc.label, violation.detail))
        record.count += 1
        if record.example_size < 0 or len(call.payload) < record.example_size:
            record.example, record.example_size, record.detail = call.describe(), len(call.payload), violation.detail
        return record

    def for_service(self, service: str) -> list[ViolationRecord]:
        """The distinct violations of one service's RPCs."""
        prefix = service_label_prefix(service)
        return [r for r in self.violations.values() if r.rpc.startswith(prefix)]


def service_label_prefix(service: str) -> str:
    """`TokenizerService/` for `tokenizer`."""
    return health_name(service).rsplit(".", 1)[-1] + "/"


BOOKS = Books()


def summary_lines(books: Books, profile: str, services: tuple[str, ...], target: int) -> list[str]:
    """The status-code table per service, then the distinct violations."""
    codes = sorted({c for counter in books.codes.values() for c in counter}, key=lambda c: (c != "OK", c))
    header = f"{'service':<11} {'requests':>8} " + " ".join(f"{c:>{max(len(c), 5)}}" for c in codes) + "  hangs  down"
    lines = [f"chatstack fuzz, profile {profile!r}: status codes per service", header]
    for service in (s for s in services if s in books.codes):
        counter = books.codes[service]
        total = sum(counter.values())
        short = f"  (< {target})" if total < target else ""
        cells = " ".join(f"{counter.get(c, 0):>{max(len(c), 5)}}" for c in codes)
        lines.append(f"{service:<11} {total:>8} {cells}  {books.hangs[service]:>5}  {books.down[service]:>4}{short}")
    lines.append("per RPC:")
    for rpc, counter in sorted(books.rpc_codes.items()):
        lines.append(f"  {rpc:<40} " + " ".join(f"{c}={n}" for c, n in sorted(counter.items())))
    distinct = sorted(books.violations.values(), key=lambda r: (r.rpc, r.oracle))
    lines.append(f"{len(distinct)} distinct oracle violations" + (":" if distinct else ""))
    lines += [r.line() for r in distinct]
    return lines
