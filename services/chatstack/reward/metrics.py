"""Reward-service metrics beside the per-RPC ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chatstack.core.metrics import LATENCY_BUCKETS_SECONDS, MetricFactory, metric_factory

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class RewardMetrics:
    """Scoring latency, items per batch, items scored, in-flight items, aborts, rejections."""

    def __init__(self, registry: CollectorRegistry | MetricFactory | None = None) -> None:
        f = metric_factory(registry)
        self.scoring_duration = f.histogram(
            "chatstack_reward_scoring_duration_seconds",
            "Time to score one batch of items through the engine (render + pooling).",
            buckets=LATENCY_BUCKETS_SECONDS)
        self.batch_items = f.histogram(
            "chatstack_reward_batch_items", "Items per scoring call (Score = 1).", buckets=BATCH_BUCKETS)
        self.items = f.counter("chatstack_reward_items", "Items scored.")
        self.in_flight = f.gauge(
            "chatstack_reward_in_flight_items", "Items being scored right now.")
        self.aborted = f.counter(
            "chatstack_reward_aborted_items",
            "Items aborted in the engine because the caller cancelled or its deadline passed.")
        self.rejected = f.counter(
            "chatstack_reward_rejected_requests",
            "Requests refused at once because max_in_flight items were being scored.")
