"""EngineStatsRecorder: vLLM's per-step scheduler stats into the generation metrics (no engine)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from chatstack.generation.engine_stats import EngineStatsRecorder
from chatstack.generation.metrics import GenerationMetrics


@dataclass
class FakePrefixCacheStats:
    """The fields of vllm.v1.metrics.stats.PrefixCacheStats the recorder reads, and one it skips."""

    queries: int = 0
    hits: int = 0
    preempted_queries: int = 0
    preempted_hits: int = 0


@dataclass
class FakeSchedulerStats:
    """The fields of vllm.v1.metrics.stats.SchedulerStats the recorder reads."""

    num_running_reqs: int = 0
    num_waiting_reqs: int = 0
    num_skipped_waiting_reqs: int = 0
    kv_cache_usage: float = 0.0
    prefix_cache_stats: FakePrefixCacheStats = field(default_factory=FakePrefixCacheStats)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def recorder(registry: CollectorRegistry) -> EngineStatsRecorder:
    return EngineStatsRecorder(GenerationMetrics(registry))


def value(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


def test_prefix_cache_counters_add_up_the_tokens_of_each_step(
    recorder: EngineStatsRecorder, registry: CollectorRegistry
) -> None:
    for queries, hits in ((300, 0), (0, 0), (300, 256), (40, 0)):
        recorder.record(FakeSchedulerStats(prefix_cache_stats=FakePrefixCacheStats(queries, hits)))
    assert value(registry, "chatstack_generation_prefix_cache_queries_total") == 640
    assert value(registry, "chatstack_generation_prefix_cache_hits_total") == 256


def test_lookups_of_requests_resumed_after_preemption_are_not_counted(
    recorder: EngineStatsRecorder, registry: CollectorRegistry
) -> None:
    recorder.record(FakeSchedulerStats(prefix_cache_stats=FakePrefixCacheStats(
        queries=10, hits=0, preempted_queries=500, preempted_hits=384)))
    assert value(registry, "chatstack_generation_prefix_cache_queries_total") == 10
    assert value(registry, "chatstack_generation_prefix_cache_hits_total") == 0


def test_gauges_show_the_latest_step(recorder: EngineStatsRecorder, registry: CollectorRegistry) -> None:
    recorder.record(FakeSchedulerStats(num_running_reqs=9, num_waiting_reqs=4, kv_cache_usage=0.75))
    recorder.record(FakeSchedulerStats(num_running_reqs=3, num_waiting_reqs=1,
                                       num_skipped_waiting_reqs=2, kv_cache_usage=0.25))
    assert value(registry, "chatstack_generation_engine_running_requests") == 3
    assert value(registry, "chatstack_generation_engine_waiting_requests") == 3  # deferred ones too
    assert value(registry, "chatstack_generation_kv_cache_usage_ratio") == 0.25


def test_a_step_without_scheduler_stats_changes_nothing(
    recorder: EngineStatsRecorder, registry: CollectorRegistry
) -> None:
    recorder.record(FakeSchedulerStats(num_running_reqs=2, kv_cache_usage=0.5))
    recorder.record(None)
    assert value(registry, "chatstack_generation_engine_running_requests") == 2
    assert value(registry, "chatstack_generation_kv_cache_usage_ratio") == 0.5


def test_stats_of_an_unexpected_shape_are_logged_once_and_never_raise_into_vllm(
    recorder: EngineStatsRecorder, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    class Renamed:  # as if a vLLM upgrade renamed a field
        num_running_reqs = 1
        num_waiting_reqs = 0

    with caplog.at_level(logging.ERROR, logger="chatstack.generation.engine_stats"):
        recorder.record(Renamed())
        recorder.record(Renamed())
    assert len(caplog.records) == 1 and "engine metrics stop updating" in caplog.records[0].message
    recorder.record(FakeSchedulerStats(prefix_cache_stats=FakePrefixCacheStats(8, 0)))
    assert value(registry, "chatstack_generation_prefix_cache_queries_total") == 8
