"""Fixtures of the fuzz suite, its place at the end of the run, and its summary table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.domain import SERVICES
from tests.fuzz.engine_bursts import BURST_BOOKS
from tests.fuzz.fuzzer import SESSION_SERVICES, Fuzzer
from tests.fuzz.harness import BOOKS, summary_lines
from tests.fuzz.http_fuzz import HTTP_BOOKS
from tests.fuzz.profiles import PROFILE

# The fixture (tests/stack_fixtures.py) giving each service's address, and the index of the
# address in its value (None: the value is the address).
ADDRESS_FIXTURES: dict[str, tuple[str, int | None]] = {
    "tokenizer": ("tokenizer_address", None), "generation": ("generation_service", 0),
    "reward": ("reward_service", 0), "session": ("session_service", 0), "chat": ("gateway", 0),
    "safety": ("safety_service", 0),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the fuzz tests last: a service they bring down must not fail unrelated tests."""
    fuzz = [item for item in items if "tests/fuzz/" in item.nodeid]
    if fuzz:
        items[:] = [item for item in items if "tests/fuzz/" not in item.nodeid] + fuzz


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The status codes per service and the distinct violations, when the fuzz ran."""
    if HTTP_BOOKS.requests:
        terminalreporter.section("chatstack HTTP fuzz")
        for line in HTTP_BOOKS.lines():
            terminalreporter.write_line(line)
    if BURST_BOOKS.codes:
        terminalreporter.section("chatstack engine bursts")
        for line in BURST_BOOKS.lines():
            terminalreporter.write_line(line)
    if not BOOKS.codes:
        return
    terminalreporter.section("chatstack fuzz")
    for line in summary_lines(BOOKS, PROFILE.name, SERVICES, PROFILE.target_requests):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def fuzzer(log_dir: Path) -> Iterator[Fuzzer]:
    """One fuzzer for the run; services are added as the tests ask for them. It reads the
    services' logs (log_dir) for the exception behind an INTERNAL."""
    runner = Fuzzer(log_dir)
    yield runner
    runner.close()


@pytest.fixture
def fuzz(request: pytest.FixtureRequest, fuzzer: Fuzzer, service: str) -> Fuzzer:
    """The fuzzer with `service` (and, for session and chat, the session oracles) started."""
    name, index = ADDRESS_FIXTURES[service]
    value = request.getfixturevalue(name)
    fuzzer.add_target(service, value if index is None else value[index])
    if service in SESSION_SERVICES:
        fuzzer.attach_sessions(request.getfixturevalue("session_service")[0])
    return fuzzer
