"""RayMetricFactory: chatstack's metrics recorded through Ray's metrics export.

Ray exports application metrics with a `ray_` prefix from every node's metrics agent; a
Prometheus relabel rule (`ray_(chatstack_.*)` -> `$1`, set by the Helm chart's Ray PodMonitor)
gives them exactly the names the standalone runtime exports, so one dashboard serves both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from chatstack.core.metrics import LATENCY_BUCKETS_SECONDS


class _Bound:
    """A metric with its label values bound (prometheus_client's `.labels(...)` result)."""

    def __init__(self, parent: _RayMetric, tags: dict[str, str]) -> None:
        self._parent = parent
        self._tags = tags
        self._key = tuple(sorted(tags.items()))

    def observe(self, value: float) -> None:
        self._parent.metric.observe(value, tags=self._tags)

    def inc(self, value: float = 1.0) -> None:
        if self._parent.kind == "counter":
            if value > 0:  # Ray rejects inc(0); in Prometheus it is a no-op
                self._parent.metric.inc(value, tags=self._tags)
        else:
            self.set(self._parent.values[self._key] + value)

    def dec(self, value: float = 1.0) -> None:
        self.set(self._parent.values[self._key] - value)

    def set(self, value: float) -> None:
        self._parent.values[self._key] = value
        self._parent.metric.set(value, tags=self._tags)


class _RayMetric:
    """A ray.util.metrics metric behind prometheus_client's API (Ray gauges have no inc/dec)."""

    def __init__(self, kind: str, metric: Any, labelnames: Sequence[str]) -> None:
        self.kind = kind
        self.metric = metric
        self.labelnames = tuple(labelnames)
        self.values: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)

    def labels(self, *values: str, **named: str) -> _Bound:
        tags = dict(zip(self.labelnames, values, strict=False)) | named
        return _Bound(self, {k: str(v) for k, v in tags.items()})

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def inc(self, value: float = 1.0) -> None:
        self.labels().inc(value)

    def dec(self, value: float = 1.0) -> None:
        self.labels().dec(value)

    def set(self, value: float) -> None:
        self.labels().set(value)


class RayMetricFactory:
    """Makes Ray metrics with prometheus_client's API (see module docstring)."""

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS_SECONDS) -> _RayMetric:
        from ray.util import metrics

        return _RayMetric("histogram", metrics.Histogram(
            name, documentation, boundaries=list(buckets), tag_keys=tuple(labelnames)), labelnames)

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> _RayMetric:
        from ray.util import metrics

        return _RayMetric("counter", metrics.Counter(name, documentation, tag_keys=tuple(labelnames)),
                          labelnames)

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> _RayMetric:
        from ray.util import metrics

        return _RayMetric("gauge", metrics.Gauge(name, documentation, tag_keys=tuple(labelnames)),
                          labelnames)
