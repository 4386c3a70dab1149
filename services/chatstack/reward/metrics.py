"""Reward-service metrics beside the per-RPC ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chatstack.core.metrics import LATENCY_BUCKETS_SECONDS

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class RewardMetrics:
    """Scoring latency, items per batch, items scored, in-flight items, aborts, rejections."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.scoring_duration = Histogram(
            "chatstack_reward_scoring_duration_seconds",
            "Time to score one batch of items through the engine (render + pooling).",
            buckets=LATENCY_BUCKETS_SECONDS, registry=registry)
        self.batch_items = Histogram(
            "chatstack_reward_batch_items", "Items per scoring call (Score = 1).",
            buckets=BATCH_BUCKETS, registry=registry)
        self.items = Counter("chatstack_reward_items", "Items scored.", registry=registry)
        self.in_flight = Gauge(
            "chatstack_reward_in_flight_items", "Items being scored right now.", registry=registry)
        self.aborted = Counter(
            "chatstack_reward_aborted_items",
            "Items aborted in the engine because the caller cancelled or its deadline passed.",
            registry=registry)
        self.rejected = Counter(
            "chatstack_reward_rejected_requests",
            "Requests refused at once because max_in_flight items were being scored.",
            registry=registry)
