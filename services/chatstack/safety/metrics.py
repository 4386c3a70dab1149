"""Safety-service metrics beside the per-RPC ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chatstack.core.metrics import LATENCY_BUCKETS_SECONDS, MetricFactory, metric_factory
from chatstack.safety.model import CheckItem, Judgement

WINDOW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class SafetyMetrics:
    """Guard latency, windows per check, items judged by subject and outcome, in-flight windows,
    aborts, rejections."""

    def __init__(self, registry: CollectorRegistry | MetricFactory | None = None) -> None:
        f = metric_factory(registry)
        self.check_duration = f.histogram(
            "chatstack_safety_guard_duration_seconds",
            "Time the guard model took to classify one Check's windows.",
            buckets=LATENCY_BUCKETS_SECONDS)
        self.windows = f.histogram(
            "chatstack_safety_check_windows", "Guard windows per Check.", buckets=WINDOW_BUCKETS)
        self.items = f.counter(
            "chatstack_safety_items", "Items judged, by subject (conversation or text), outcome "
            "(clean or the category that flagged it) and who flagged it (rules or model).",
            ["subject", "category", "flagged_by"])
        self.in_flight = f.gauge(
            "chatstack_safety_in_flight_windows", "Guard windows being classified right now.")
        self.aborted = f.counter(
            "chatstack_safety_aborted_windows",
            "Windows aborted in the engine because the caller cancelled or its deadline passed.")
        self.rejected = f.counter(
            "chatstack_safety_rejected_requests",
            "Requests refused at once because max_in_flight windows were being classified.")

    def checked(self, item: CheckItem, verdict: Judgement) -> None:
        """Count one judged item."""
        subject = "text" if item.text is not None else "conversation"
        self.items.labels(subject, verdict.category or "clean", verdict.flagged_by or "none").inc()
