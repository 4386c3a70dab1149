"""Every RPC of every service, fuzzed over real gRPC against the real stack.

Each example sends one request (a generated message, or malformed bytes) with a deadline and
checks it: never INTERNAL or UNKNOWN, never past the deadline, the service still SERVING, no
owner sees another's data, a failed mutation leaves its session as it was (tests/fuzz/oracles.py).
After each test every started service must still be SERVING and every owner's listing must hold
only their own sessions. Sizes: tests/fuzz/profiles.py (`make fuzz` runs the long profile).
"""

from __future__ import annotations

import pytest

from tests.fuzz.corpus import corpus
from tests.fuzz.domain import SERVICES, message_calls, raw_calls
from tests.fuzz.fuzzer import Fuzzer
from tests.fuzz.profiles import PROFILE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(PROFILE.test_timeout)]


@pytest.mark.parametrize("service", SERVICES)
def test_edge_corpus_to_every_service_breaks_no_oracle(service: str, fuzz: Fuzzer) -> None:
    """The edge classes of the issue, sent explicitly (tests/fuzz/corpus.py)."""
    fuzz.run_corpus(service, corpus(service))
    fuzz.finish(service)


@pytest.mark.parametrize("service", SERVICES)
def test_generated_messages_to_every_rpc_break_no_oracle(service: str, fuzz: Fuzzer) -> None:
    """Valid-or-invalid messages of each RPC's request type, with edge values everywhere."""
    fuzz.run(service, message_calls(service), PROFILE.message_examples)
    fuzz.finish(service)


@pytest.mark.parametrize("service", SERVICES)
def test_malformed_request_bytes_to_every_rpc_break_no_oracle(service: str, fuzz: Fuzzer) -> None:
    """Bytes no stub would send: truncated, invalid UTF-8, wrong wire types, bad lengths, deep groups."""
    fuzz.run(service, raw_calls(service), PROFILE.raw_examples)
    fuzz.finish(service)
