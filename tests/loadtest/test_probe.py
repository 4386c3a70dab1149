"""The outside latency probe (loadtest/probe.py): its figures, and a short run against real services."""

from __future__ import annotations

import pytest

from loadtest.probe import Series, gap_summary, measure


def test_series_and_gap_figures() -> None:
    series = Series([0.001 * i for i in range(1, 101)], failures=2)
    figures = series.summary()
    assert (figures["count"], figures["failures"]) == (100, 2)
    assert figures["p50_ms"] == pytest.approx(50.5) and figures["max_ms"] == pytest.approx(100)
    assert Series().summary() == {"count": 0, "failures": 0}
    gaps = gap_summary(1000, [0.002, 0.06, 0.2, 0.7])
    assert gaps == {"loops": 1000, "max_ms": pytest.approx(700), "over_50ms": 3, "over_100ms": 2, "over_500ms": 1}


@pytest.mark.integration
def test_a_short_probe_of_real_services_measures_health_cheap_rpcs_and_scheduler_gaps(
        session_service: tuple[str, int], tokenizer_address: str) -> None:
    summary = measure({"session": session_service[0], "tokenizer": tokenizer_address}, seconds=1.5, interval=0.1)
    for service in ("session", "tokenizer"):
        figures = summary["services"][service]  # type: ignore[index]
        for kind in ("check", "rpc"):
            assert figures[kind]["count"] >= 5 and figures[kind]["failures"] == 0, figures
            assert 0 < figures[kind]["p50_ms"] <= figures[kind]["p99_ms"] <= figures[kind]["max_ms"]
    assert summary["scheduler_gaps"]["loops"] > 100  # type: ignore[index]
