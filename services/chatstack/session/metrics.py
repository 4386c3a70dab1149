"""Session-service metrics beside the per-RPC ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chatstack.core.metrics import MetricFactory, metric_factory

REDIS_BUCKETS_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                         0.1, 0.25, 0.5, 1.0, 2.5)


class SessionMetrics:
    """Redis round-trip latency by operation, and session/turn counters."""

    def __init__(self, registry: CollectorRegistry | MetricFactory | None = None) -> None:
        f = metric_factory(registry)
        self.redis_duration = f.histogram(
            "chatstack_session_redis_duration_seconds",
            "Latency of one Redis round trip (one Lua script) by operation.",
            ["op"], buckets=REDIS_BUCKETS_SECONDS)
        self.sessions_created = f.counter(
            "chatstack_session_sessions_created", "Sessions created (forks included).")
        self.sessions_deleted = f.counter(
            "chatstack_session_sessions_deleted", "Sessions deleted.")
        self.turns_pushed = f.counter(
            "chatstack_session_turns_pushed", "Turns pushed.")
        self.turns_popped = f.counter(
            "chatstack_session_turns_popped", "Turns popped.")
        self.preference_events = f.counter(
            "chatstack_session_preference_events",
            "Preference events stored, by kind (feedback, best_of, regenerate, edit, undo).", ["kind"])
        self.preferences_exported = f.counter(
            "chatstack_session_preferences_exported", "Preference events read by exports, by kind.", ["kind"])
        self.turns_evicted = f.counter(
            "chatstack_session_turns_evicted",
            "Oldest turns evicted by the max-turns policy evict_oldest.")
