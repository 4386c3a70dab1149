"""vLLM's per-step scheduler stats copied into the generation service's metrics.

vLLM hands each engine step's `SchedulerStats` to its stat loggers from AsyncLLM's output-handler
task, i.e. on the service's event loop. Recording only sets gauges and adds to counters in memory
(no I/O, nothing that waits), so it cannot stall the loop; scrapes read the registry from the
metrics server's own thread.
"""

from __future__ import annotations

import logging
from typing import Any

from chatstack.generation.metrics import GenerationMetrics

log = logging.getLogger(__name__)


class EngineStatsRecorder:
    """Copies one engine step's scheduler stats into `GenerationMetrics`: running and waiting
    requests, KV-cache usage, and the prefix-cache query and hit counters (in tokens).

    One recorder per service: the service runs one engine (no data parallelism), so the gauges
    describe that engine and the counters add up its steps. `record` never raises.
    """

    def __init__(self, metrics: GenerationMetrics) -> None:
        self.metrics = metrics
        self._failed = False

    def record(self, scheduler_stats: Any) -> None:
        """Record one step's `vllm.v1.metrics.stats.SchedulerStats` (None: the step has none)."""
        if scheduler_stats is None:
            return
        try:
            self._copy(scheduler_stats)
        except Exception:
            # vLLM calls this inside its output handler, where an exception fails every in-flight
            # request; metrics are not worth that. SchedulerStats is not a stable vLLM interface,
            # so a field may move in an upgrade: say so once, loudly, and keep serving.
            if not self._failed:
                self._failed = True
                log.exception("copying vLLM's scheduler stats failed; engine metrics stop updating")

    def _copy(self, stats: Any) -> None:
        m = self.metrics
        m.running.set(stats.num_running_reqs)
        m.waiting.set(stats.num_waiting_reqs + getattr(stats, "num_skipped_waiting_reqs", 0))
        m.kv_cache_usage.set(stats.kv_cache_usage)
        # The scheduler resets these after each report, so each step's values add up. Counted as
        # vLLM's own vllm:prefix_cache_queries/hits are: requests looked up for the first time.
        # A request resumed after preemption is reported apart (`preempted_*`) and left out, as
        # its "hits" are mostly its own KV computed before, not a prefix shared across requests.
        prefix = stats.prefix_cache_stats
        if prefix.queries > 0:  # most steps only decode and look nothing up
            m.prefix_cache_queries.inc(prefix.queries)
        if prefix.hits > 0:
            m.prefix_cache_hits.inc(prefix.hits)


def vllm_stat_logger(metrics: GenerationMetrics) -> type[Any]:
    """A vLLM stat-logger class feeding `metrics`, for AsyncLLM's `stat_loggers` (vLLM builds
    one per engine as `factory(vllm_config, engine_index)`)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    recorder = EngineStatsRecorder(metrics)

    class ChatstackStatLogger(StatLoggerBase):
        """Hands each engine step's scheduler stats to the service's `EngineStatsRecorder`."""

        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any,
                   mm_cache_stats: Any = None, engine_idx: int = 0) -> None:
            recorder.record(scheduler_stats)

        def log_engine_initialized(self) -> None:
            pass  # our metrics are scraped, not logged

    return ChatstackStatLogger
