"""Gateway metrics beside the per-RPC ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chatstack.core.metrics import LATENCY_BUCKETS_SECONDS, MetricFactory, metric_factory
from chatstack.core.request_context import current_transport
from chatstack.gateway.replicas.replica_set import BackendMetrics


class GatewayMetrics:
    """Per-stage latency of Chat calls, best-of-n usage and rollbacks."""

    def __init__(self, registry: CollectorRegistry | MetricFactory | None = None) -> None:
        f = metric_factory(registry)
        self.stage = f.histogram(
            "chatstack_gateway_stage_duration_seconds",
            "Wall-clock seconds of each stage of a successful chat call, by the front door it came "
            "through (transport: grpc, http).",
            ["stage", "transport"], buckets=LATENCY_BUCKETS_SECONDS)
        self.best_of = f.counter(
            "chatstack_gateway_best_of_requests",
            "Chat calls that generated several candidates and kept the reward model's best, by n.",
            ["n"])
        self.rollbacks = f.counter(
            "chatstack_gateway_rollbacks",
            "Failed or cancelled calls whose session writes were undone, by outcome.",
            ["outcome"])
        self.preference_events = f.counter(
            "chatstack_gateway_preference_events",
            "Preference events by kind (feedback, best_of, regenerate, edit, undo) and outcome: "
            "recorded, failed, dropped (too many pending), gone (the session was deleted first).",
            ["kind", "outcome"])
        self.deferred_scores = f.counter(
            "chatstack_gateway_deferred_scores",
            "Single answers scored after they were stored (single_answer_scoring=async), by "
            "outcome: scored, gone (the turn was undone or deleted first), failed, dropped (too "
            "many pending), cancelled (shutdown).",
            ["outcome"])
        self.moderated = f.counter(
            "chatstack_gateway_moderated_answers",
            "Answers the safety stage stopped, by stage (input, output), category and front door "
            "(transport: grpc, http).",
            ["stage", "category", "transport"])
        self.guard_failures = f.counter(
            "chatstack_gateway_guard_failures",
            "Safety checks that could not be made (the safety service down, late or refusing), by "
            "stage and what the fail mode did: refused (closed) or passed (open).",
            ["stage", "outcome"])
        self.guard_latency = f.histogram(
            "chatstack_gateway_guard_duration_seconds",
            "Seconds of one safety check as the gateway sees it, by stage (input, output).",
            ["stage"], buckets=LATENCY_BUCKETS_SECONDS)
        self.monitor_holds = f.counter(
            "chatstack_gateway_monitor_holds",
            "Times a streaming answer's delivery waited for the output monitor's check (the checks "
            "fell behind the stream: stream-first's bound, or holdback's window).")
        self.backends = BackendMetrics(f)

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One stage's duration, labelled with the current call's transport."""
        self.stage.labels(stage, current_transport()).observe(seconds)
