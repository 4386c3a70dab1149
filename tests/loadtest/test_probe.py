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


PROBE = {"interval_seconds": 0.1, "scheduler_gaps": {"loops": 900, "max_ms": 180.0, "over_50ms": 2,
                                                     "over_100ms": 1, "over_500ms": 0},
         "services": {"session": {"check": {"count": 90, "failures": 0, "p50_ms": 1.0, "p99_ms": 12.0,
                                            "max_ms": 300.0},
                                  "rpc": {"count": 90, "failures": 0, "p50_ms": 1.5, "p99_ms": 9.0, "max_ms": 40.0}},
                      "tokenizer": {"check": {"count": 90, "failures": 0, "p50_ms": 0.9, "p99_ms": 60.0,
                                              "max_ms": 80.0}}}}


def test_probe_objectives_name_the_flag_and_the_worst_service() -> None:
    from loadtest.report import ProbeSlo, check_probe_slo, probe_table

    violations, passes = check_probe_slo(PROBE, ProbeSlo(check_p99_ms=50, check_max_ms=250, gap_max_ms=100))
    assert violations == [
        "health Check p99 seen from outside: tokenizer 60.0 ms > 50 ms (--slo-probe-p99-ms)",
        "health Check max seen from outside: session 300.0 ms > 250 ms (--slo-probe-max-ms)",
        "scheduler gap max 180.0 ms > 100 ms (--slo-gap-max-ms)"]
    violations, passes = check_probe_slo(PROBE, ProbeSlo(check_p99_ms=100, gap_max_ms=200))
    assert violations == [] and len(passes) == 2
    table = probe_table(PROBE)
    assert "session     check      90     0      1.0     12.0    300.0" in table
    assert "scheduler gaps: max 180.0 ms; over 50/100/500 ms: 2/1/0 in 900 sleeps" in table


def test_the_probe_gets_the_runs_length_and_the_locust_targets() -> None:
    from pathlib import Path

    from loadtest.run import parse_args, probe_command

    args, extra = parse_args(["--run-time", "2m", "--probe", "--", "--session", "127.0.0.1:1",
                              "--tokenizer=127.0.0.1:2", "--api-key", "k", "--max-tokens", "8"])
    command = probe_command(args, Path("/tmp/r/x"), extra)
    assert command[2:] == ["loadtest.probe", "--seconds", "120", "--out", "/tmp/r/x_probe.json",
                           "--session", "127.0.0.1:1", "--tokenizer=127.0.0.1:2"]
