"""Prometheus metrics shared by every service, served on their own HTTP port.

Every metric lives in a registry owned by the service's runtime (no global registry), is named
under `chatstack_` with a unit suffix, and has bounded labels (service, method, code).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Aligned with vLLM's request-latency buckets so dashboards compare across layers.
LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)


class MetricFactory(Protocol):
    """Makes metrics with prometheus_client's API (`.labels(...).observe/inc/dec/set`).

    The standalone runtime uses `PrometheusMetricFactory` (served on the metrics port); the Ray
    Serve runtime uses `chatstack.serve.ray_metrics.RayMetricFactory` (exported by Ray), so every
    service records the same metric names in both runtimes.
    """

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS_SECONDS) -> Any: ...
    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Any: ...
    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Any: ...


class PrometheusMetricFactory:
    """prometheus_client metrics in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS_SECONDS) -> Histogram:
        return Histogram(name, documentation, labelnames, buckets=buckets, registry=self.registry)

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, labelnames, registry=self.registry)

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, labelnames, registry=self.registry)


def metric_factory(source: CollectorRegistry | MetricFactory | None) -> MetricFactory:
    """A factory from a registry (standalone), a factory (Serve) or nothing (tests)."""
    if source is None or isinstance(source, CollectorRegistry):
        return PrometheusMetricFactory(source)
    return source


class RpcMetrics:
    """Per-RPC latency histogram, request counter by status code, and in-flight gauge."""

    def __init__(self, registry: CollectorRegistry | MetricFactory | None, service: str) -> None:
        f = metric_factory(registry)
        self.service = service
        self.duration = f.histogram(
            "chatstack_rpc_duration_seconds",
            "Server-side latency of a gRPC call, from handler start to its last message.",
            ["service", "method"], LATENCY_BUCKETS_SECONDS)
        self.requests = f.counter(
            "chatstack_rpc_requests", "gRPC calls handled, by method and final status code.",
            ["service", "method", "code"])
        self.in_flight = f.gauge(
            "chatstack_rpc_in_flight_requests", "gRPC calls being handled right now.",
            ["service", "method"])

    def observe(self, method: str, code: str, seconds: float) -> None:
        """Record one finished call."""
        self.duration.labels(self.service, method).observe(seconds)
        self.requests.labels(self.service, method, code).inc()


class MetricsServer:
    """The `/metrics` HTTP endpoint of one registry, on its own port and thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        return self._server.server_port if self._server else self._port

    def start(self) -> None:
        """Start serving in a daemon thread."""
        self._server, self._thread = start_http_server(
            self._port, addr=self._host, registry=self._registry
        )

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
