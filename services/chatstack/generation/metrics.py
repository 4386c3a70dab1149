"""Generation-service metrics, with buckets aligned to vLLM's own histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chatstack.core.metrics import MetricFactory, metric_factory

# The buckets of vllm:time_to_first_token_seconds, vllm:inter_token_latency_seconds and
# vllm:e2e_request_latency_seconds (vLLM 0.32), so dashboards compare layer by layer.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
               10.0, 20.0, 40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


class GenerationMetrics:
    """TTFT/ITL/E2E histograms, token counters, engine queue and KV-cache gauges, prefix-cache
    counters, aborts and rejections."""

    def __init__(self, registry: CollectorRegistry | MetricFactory | None = None) -> None:
        f = metric_factory(registry)
        self.ttft = f.histogram(
            "chatstack_generation_time_to_first_token_seconds",
            "Time from a request's arrival in the service to its first generated token.",
            buckets=TTFT_BUCKETS)
        self.itl = f.histogram(
            "chatstack_generation_inter_token_latency_seconds",
            "Time between consecutive generated tokens of a choice.", buckets=ITL_BUCKETS)
        self.e2e = f.histogram(
            "chatstack_generation_e2e_request_latency_seconds",
            "Time from a request's arrival in the service to its last token.", buckets=E2E_BUCKETS)
        self.prompt_tokens = f.counter(
            "chatstack_generation_prompt_tokens", "Prompt tokens of admitted requests.")
        self.generated_tokens = f.counter(
            "chatstack_generation_generated_tokens", "Tokens generated, all choices.")
        self.running = f.gauge(
            "chatstack_generation_engine_running_requests",
            "Requests the engine's scheduler is running (from vLLM's scheduler stats).")
        self.waiting = f.gauge(
            "chatstack_generation_engine_waiting_requests",
            "Requests waiting in the engine's scheduler (from vLLM's scheduler stats).")
        self.kv_cache_usage = f.gauge(
            "chatstack_generation_kv_cache_usage_ratio",
            "Fraction of the engine's KV-cache blocks in use, 0 to 1 (from vLLM's scheduler stats).")
        # In tokens, as vLLM's own vllm:prefix_cache_queries/hits: hits/queries is the fraction of
        # prompt tokens whose KV was reused rather than recomputed, the effect of routing a
        # session's turns to the replica that already holds its prefix.
        self.prefix_cache_queries = f.counter(
            "chatstack_generation_prefix_cache_queries",
            "Prompt tokens looked up in the engine's prefix cache, in tokens (from vLLM's "
            "scheduler stats; requests resumed after preemption are not counted).")
        self.prefix_cache_hits = f.counter(
            "chatstack_generation_prefix_cache_hits",
            "Prompt tokens found in the engine's prefix cache (KV reused, not recomputed), in "
            "tokens (from vLLM's scheduler stats; requests resumed after preemption are not "
            "counted).")
        self.in_flight = f.gauge(
            "chatstack_generation_in_flight_requests",
            "Requests admitted by the service and not finished.")
        self.aborted = f.counter(
            "chatstack_generation_aborted_requests",
            "Requests aborted in the engine because the client cancelled or its deadline passed.")
        self.rejected = f.counter(
            "chatstack_generation_rejected_requests",
            "Requests refused at once because max_in_flight requests were running.")
