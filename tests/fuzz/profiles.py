"""How much to fuzz: `ci` (the default, deterministic, part of `make test`) or `long` (`make fuzz`).

CHATSTACK_FUZZ_PROFILE=ci|long picks the profile. Every example sends exactly one fuzz request to
the service under test, so requests per service = message_examples + raw_examples + the edge
corpus (tests/fuzz/corpus.py, 5-12 requests).

Violations are collected, not raised, so one run lists every distinct failure with its smallest
example and the status-code table counts every request. CHATSTACK_FUZZ_SHRINK=1 raises at the
first violation instead and lets Hypothesis shrink it to a minimal falsifying example (slow: each
shrink step is a real RPC). CHATSTACK_FUZZ_LOG=path appends every call and its status to a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings


@dataclass(frozen=True)
class Profile:
    """Examples per test, whether runs are deterministic, and the per-test time limit."""

    name: str
    message_examples: int
    raw_examples: int
    derandomize: bool
    test_timeout: int  # seconds, for pytest-timeout
    target_requests: int = 0  # the summary flags services that got fewer requests
    burst_requests: int = 60  # per engine service, in concurrent bursts (tests/fuzz/engine_bursts.py)
    http_requests: int = 150  # to the gateway's HTTP door (tests/fuzz/http_fuzz.py)
    schema_count: int = 24  # JSON schemas constrained decoding must honour (tests/fuzz/json_schemas.py)


PROFILES = {
    "ci": Profile("ci", message_examples=36, raw_examples=10, derandomize=True, test_timeout=300,
                  burst_requests=60, http_requests=150),
    "long": Profile("long", message_examples=1600, raw_examples=500, derandomize=False, test_timeout=0,
                    target_requests=2000, burst_requests=2000, http_requests=2000, schema_count=120),
}
PROFILE = PROFILES[os.environ.get("CHATSTACK_FUZZ_PROFILE", "ci")]
SHRINK = os.environ.get("CHATSTACK_FUZZ_SHRINK") == "1"
CALL_LOG = os.environ.get("CHATSTACK_FUZZ_LOG", "")  # if set, one line per call is appended there


def hypothesis_settings(max_examples: int) -> settings:
    """Settings of one fuzz test: no per-example deadline (the oracles time calls), no database."""
    phases = [Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK else [])]
    return settings(max_examples=max_examples, deadline=None, derandomize=PROFILE.derandomize, database=None,
                    phases=phases, suppress_health_check=list(HealthCheck), print_blob=False)
