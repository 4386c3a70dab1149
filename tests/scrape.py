"""Reading a service's Prometheus endpoint in tests: one sample, and the engine's idle state."""

from __future__ import annotations

import re
import urllib.request


def samples(metrics_port: int, *names: str) -> list[float]:
    """The values of the unlabelled samples `names`, from one scrape; fails the test if one is
    not exported."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    values = []
    for name in names:
        match = re.search(rf"^{re.escape(name)} ([-+\d.e]+)$", body, re.M)
        assert match, f"{name} not exported"
        values.append(float(match.group(1)))
    return values


def metric(metrics_port: int, name: str) -> float:
    """The value of the unlabelled sample `name`."""
    return samples(metrics_port, name)[0]


def metric_labelled(metrics_port: int, name: str, labels: str) -> float:
    """The value of the sample `name{labels}` (labels as exported, e.g. 'outcome="scored"'),
    0 if it is not exported yet."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    match = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} ([-+\d.e]+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


def engine_idle(metrics_port: int) -> bool:
    """Whether the generation engine's scheduler reports no running and no waiting request.

    The gauges come from vLLM's scheduler stats, which arrive with the engine step after an
    abort: poll this with a deadline rather than reading it once."""
    return samples(metrics_port, "chatstack_generation_engine_running_requests",
                   "chatstack_generation_engine_waiting_requests") == [0.0, 0.0]


def rpc_calls(metrics_port: int, service: str) -> dict[str, float]:
    """Calls chatstack service `service` ("session", ...) has handled, by method name (every status
    code summed)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    calls: dict[str, float] = {}
    for labels, value in re.findall(r"^chatstack_rpc_requests_total\{(.*)\} ([-+\d.e]+)$", body, re.M):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if fields.get("service") == service:
            method = fields["method"].rpartition("/")[2]
            calls[method] = calls.get(method, 0.0) + float(value)
    return calls
