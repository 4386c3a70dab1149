"""Reading a service's Prometheus endpoint in tests: one sample, and the engine's idle state."""

from __future__ import annotations

import re
import urllib.request


def metric(metrics_port: int, name: str) -> float:
    """The value of the unlabelled sample `name`; fails the test if it is not exported."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    match = re.search(rf"^{re.escape(name)} ([-+\d.e]+)$", body, re.M)
    assert match, f"{name} not exported"
    return float(match.group(1))


def engine_idle(metrics_port: int) -> bool:
    """Whether the generation engine's scheduler reports no running and no waiting request.

    The gauges come from vLLM's scheduler stats, which arrive with the engine step after an
    abort: poll this with a deadline rather than reading it once."""
    return (metric(metrics_port, "chatstack_generation_engine_running_requests") == 0
            and metric(metrics_port, "chatstack_generation_engine_waiting_requests") == 0)
