"""Reading Locust's CSV reports: per-RPC summary table, SLO check and a PNG plot.

No Locust import here (Locust monkey-patches the process with gevent).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TTFT_SUFFIX = " TTFT"
AGGREGATED = "Aggregated"
# Requests that do no model work: their latency is the stack's overhead, so a long tail on them is
# waiting (for a core, a lock, a queue), not work. `--slo-cheap-tail-ratio` gates on these.
CHEAP_PREFIXES = ("Session.", "Tokenizer.")
# Fewer samples than this make a p99 one request's latency: such names are not gated on.
MIN_TAIL_SAMPLES = 100


def _number(text: str | None) -> float:
    """A CSV cell as a float; `N/A` and empty cells are NaN."""
    try:
        return float(text) if text not in (None, "", "N/A") else math.nan
    except ValueError:
        return math.nan


@dataclass(frozen=True)
class RpcStats:
    """One row of `<prefix>_stats.csv`: a request name's counts and latencies (milliseconds)."""

    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    average: float
    maximum: float

    @property
    def is_ttft(self) -> bool:
        """A time-to-first-token entry (a part of another stream's request, not a request itself)."""
        return self.name.endswith(TTFT_SUFFIX)


@dataclass(frozen=True)
class RunStats:
    """Everything the SLO check and the summary need from one run."""

    rpcs: list[RpcStats]
    aggregated: RpcStats | None
    exceptions: int  # unhandled exceptions in user code (Locust's `_exceptions.csv`)

    @property
    def requests(self) -> list[RpcStats]:
        """Entries that are requests (TTFT entries excluded)."""
        return [r for r in self.rpcs if not r.is_ttft]

    def ttft(self, name: str) -> RpcStats | None:
        """The TTFT entry of a streaming request name, if any."""
        return next((r for r in self.rpcs if r.name == name + TTFT_SUFFIX), None)

    @property
    def total_requests(self) -> int:
        """Requests made (TTFT entries are not requests)."""
        return sum(r.requests for r in self.requests)

    @property
    def total_errors(self) -> int:
        """Failed requests plus unhandled exceptions in user code."""
        return sum(r.failures for r in self.requests) + self.exceptions

    @property
    def error_rate(self) -> float:
        """Errors per request (1.0 when nothing was requested at all)."""
        return self.total_errors / self.total_requests if self.total_requests else 1.0


def _row_stats(row: dict[str, str]) -> RpcStats:
    return RpcStats(name=row["Name"], requests=int(row["Request Count"]), failures=int(row["Failure Count"]),
                    rps=_number(row["Requests/s"]), p50=_number(row["50%"]), p95=_number(row["95%"]),
                    p99=_number(row["99%"]), average=_number(row["Average Response Time"]),
                    maximum=_number(row["Max Response Time"]))


def read_run(prefix: str | Path) -> RunStats:
    """`<prefix>_stats.csv` (and `_exceptions.csv` if present) as RunStats."""
    prefix = str(prefix)
    rpcs: list[RpcStats] = []
    aggregated = None
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            stats = _row_stats(row)
            if stats.name == AGGREGATED and not row["Type"]:
                aggregated = stats
            else:
                rpcs.append(stats)
    exceptions = 0
    path = Path(f"{prefix}_exceptions.csv")
    if path.is_file():
        with path.open(newline="") as f:
            exceptions = sum(int(row.get("Count") or 0) for row in csv.DictReader(f))
    return RunStats(rpcs, aggregated, exceptions)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def summary_table(run: RunStats) -> str:
    """Per-RPC table: requests, failures, RPS, p50/p95/p99 and, for streams, TTFT p50/p95 (ms)."""
    header = ("RPC", "requests", "failures", "RPS", "p50 ms", "p95 ms", "p99 ms", "TTFT p50", "TTFT p95")
    rows: list[tuple[str, ...]] = []
    requests = {r.name: r for r in run.requests}
    for r in run.rpcs:  # a stream whose first token came but whose end did not (still running at the stop)
        base = r.name.removesuffix(TTFT_SUFFIX)
        if r.is_ttft and base not in requests:
            requests[base] = RpcStats(base, 0, 0, 0.0, math.nan, math.nan, math.nan, math.nan, math.nan)
    for r in sorted(requests.values(), key=lambda r: r.name):
        ttft = run.ttft(r.name)
        rows.append((r.name, str(r.requests), str(r.failures), f"{r.rps:.2f}", _ms(r.p50), _ms(r.p95),
                     _ms(r.p99), _ms(ttft.p50) if ttft else "", _ms(ttft.p95) if ttft else ""))
    if rows:
        rows.append(("all requests", str(run.total_requests), str(run.total_errors),
                     f"{sum(r.rps for r in run.requests):.2f}", "", "", "", "", ""))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                              strict=True)))

    out = [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]
    if run.exceptions:
        out.append(f"(failures of `all requests` include {run.exceptions} unhandled exception(s) "
                   "in user code)")
    return "\n".join(out)


@dataclass(frozen=True)
class Slo:
    """Objectives; None = not checked. Latencies in milliseconds, error rate as a fraction."""

    p95_ms: float | None = None  # every request name's p95
    ttft_p95_ms: float | None = None  # every stream's TTFT p95
    error_rate: float | None = None  # (failures + unhandled exceptions) / requests
    cheap_tail_ratio: float | None = None  # every cheap RPC's p99 / p50

    @property
    def active(self) -> bool:
        """True when at least one objective is set."""
        return any(v is not None for v in (self.p95_ms, self.ttft_p95_ms, self.error_rate,
                                           self.cheap_tail_ratio))


def cheap_rpcs(run: RunStats) -> list[RpcStats]:
    """The requests that do no model work (`CHEAP_PREFIXES`) with enough samples for a p99."""
    return [r for r in run.requests if r.name.startswith(CHEAP_PREFIXES) and r.requests >= MIN_TAIL_SAMPLES
            and not math.isnan(r.p50) and not math.isnan(r.p99) and r.p50 > 0]


@dataclass(frozen=True)
class ProbeSlo:
    """Objectives on what the outside probe (loadtest/probe.py) saw; None = not checked (ms)."""

    check_p99_ms: float | None = None  # every service's health Check p99
    check_max_ms: float | None = None  # every service's slowest health Check
    gap_max_ms: float | None = None  # the scheduler-gap meter's longest wait for a core

    @property
    def active(self) -> bool:
        """True when at least one objective is set."""
        return any(v is not None for v in (self.check_p99_ms, self.check_max_ms, self.gap_max_ms))


def probe_table(probe: dict[str, Any]) -> str:
    """The outside probe's figures: per service and probe, count, failures, p50/p99/max (ms)."""
    lines = ["seen from outside (loadtest/probe.py, every "
             f"{probe.get('interval_seconds', 0.1) * 1e3:.0f} ms)",
             f"{'service':<11} {'probe':<6} {'count':>6} {'fail':>5} "
             f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for service, kinds in sorted(probe.get("services", {}).items()):
        for kind, f in sorted(kinds.items()):
            lines.append(f"{service:<11} {kind:<6} {f.get('count', 0):>6} {f.get('failures', 0):>5} "
                         f"{f.get('p50_ms', math.nan):>8.1f} {f.get('p99_ms', math.nan):>8.1f} "
                         f"{f.get('max_ms', math.nan):>8.1f}")
    gaps = probe.get("scheduler_gaps", {})
    lines.append(f"scheduler gaps: max {gaps.get('max_ms', math.nan):.1f} ms; over 50/100/500 ms: "
                 f"{gaps.get('over_50ms', 0)}/{gaps.get('over_100ms', 0)}/{gaps.get('over_500ms', 0)} "
                 f"in {gaps.get('loops', 0)} sleeps")
    return "\n".join(lines)


def check_probe_slo(probe: dict[str, Any], slo: ProbeSlo) -> tuple[list[str], list[str]]:
    """(violations, passes) of the outside probe's objectives, naming the flag and the worst."""
    violations: list[str] = []
    passes: list[str] = []
    checks = {s: k["check"] for s, k in probe.get("services", {}).items() if k.get("check", {}).get("count")}
    for limit, key, flag in ((slo.check_p99_ms, "p99_ms", "--slo-probe-p99-ms"),
                             (slo.check_max_ms, "max_ms", "--slo-probe-max-ms")):
        if limit is None:
            continue
        if not checks:
            violations.append(f"no health Check was answered ({flag})")
            continue
        worst = max(checks, key=lambda s: checks[s][key])
        text = f"health Check {key.removesuffix('_ms')} seen from outside"
        if checks[worst][key] > limit:
            violations.append(f"{text}: {worst} {checks[worst][key]:.1f} ms > {limit:g} ms ({flag})")
        else:
            passes.append(f"{text} <= {limit:g} ms for every service (worst: {worst} "
                          f"{checks[worst][key]:.1f} ms)")
    if slo.gap_max_ms is not None:
        gap = probe.get("scheduler_gaps", {}).get("max_ms", math.inf)
        (violations if gap > slo.gap_max_ms else passes).append(
            f"scheduler gap max {gap:.1f} ms {'>' if gap > slo.gap_max_ms else '<='} {slo.gap_max_ms:g} ms "
            "(--slo-gap-max-ms)")
    return violations, passes


def check_slo(run: RunStats, slo: Slo) -> tuple[list[str], list[str]]:
    """(violations, passes): one line per objective, naming it, the flag and the worst offender."""
    violations: list[str] = []
    passes: list[str] = []
    if not slo.active:
        return violations, passes
    if run.total_requests == 0:
        return ["no requests were made: every objective is unmet"], passes
    if slo.p95_ms is not None:
        measured = [r for r in run.requests if not math.isnan(r.p95)]
        worst = max(measured, key=lambda r: r.p95) if measured else None
        bad = [r for r in measured if r.p95 > slo.p95_ms]
        if bad:
            violations += [f"p95 latency of {r.name} is {_ms(r.p95)} ms > {slo.p95_ms:g} ms (--slo-p95-ms)"
                           for r in sorted(bad, key=lambda r: -r.p95)]
        elif worst:
            passes.append(f"p95 latency <= {slo.p95_ms:g} ms for every RPC "
                          f"(worst: {worst.name} {_ms(worst.p95)} ms)")
    if slo.ttft_p95_ms is not None:
        ttfts = [r for r in run.rpcs if r.is_ttft and not math.isnan(r.p95)]
        bad = [r for r in ttfts if r.p95 > slo.ttft_p95_ms]
        if not ttfts:
            violations.append("TTFT p95: no stream delivered a first token (--slo-ttft-p95-ms)")
        elif bad:
            violations += [f"TTFT p95 of {r.name.removesuffix(TTFT_SUFFIX)} is {_ms(r.p95)} ms > "
                           f"{slo.ttft_p95_ms:g} ms (--slo-ttft-p95-ms)"
                           for r in sorted(bad, key=lambda r: -r.p95)]
        else:
            worst = max(ttfts, key=lambda r: r.p95)
            passes.append(f"TTFT p95 <= {slo.ttft_p95_ms:g} ms for every stream "
                          f"(worst: {worst.name.removesuffix(TTFT_SUFFIX)} {_ms(worst.p95)} ms)")
    if slo.cheap_tail_ratio is not None:
        cheap = cheap_rpcs(run)
        flag, ratio = "--slo-cheap-tail-ratio", slo.cheap_tail_ratio
        bad = [r for r in cheap if r.p99 > ratio * r.p50]
        if not cheap:
            names = ", ".join(p + "*" for p in CHEAP_PREFIXES)
            violations.append(f"no cheap RPC ({names}) had {MIN_TAIL_SAMPLES} requests ({flag})")
        elif bad:
            violations += [f"p99 of {r.name} is {r.p99 / r.p50:.1f}x its p50 ({_ms(r.p99)} vs "
                           f"{_ms(r.p50)} ms) > {ratio:g}x ({flag})"
                           for r in sorted(bad, key=lambda r: -r.p99 / r.p50)]
        else:
            worst = max(cheap, key=lambda r: r.p99 / r.p50)
            passes.append(f"p99 <= {ratio:g}x p50 for every cheap RPC (worst: {worst.name} "
                          f"{_ms(worst.p99)} vs {_ms(worst.p50)} ms)")
    if slo.error_rate is not None:
        text = (f"error rate {run.error_rate:.4f} ({run.total_errors} of {run.total_requests} requests)")
        if run.error_rate > slo.error_rate:
            violations.append(f"{text} > {slo.error_rate:g} (--slo-error-rate)")
        else:
            passes.append(f"{text} <= {slo.error_rate:g}")
    return violations, passes


@dataclass
class _Series:
    t: list[float]
    values: dict[str, list[float]]


def _history(path: Path) -> dict[str, _Series]:
    """`_stats_history.csv` as {request name: time series of users, RPS, failures/s, p50/p95/p99}."""
    series: dict[str, _Series] = {}
    start: float | None = None
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stamp = float(row["Timestamp"])
            start = stamp if start is None else start
            s = series.setdefault(row["Name"], _Series([], {k: [] for k in
                                                           ("users", "rps", "fps", "p50", "p95", "p99")}))
            s.t.append(stamp - start)
            s.values["users"].append(_number(row["User Count"]))
            s.values["rps"].append(_number(row["Requests/s"]))
            s.values["fps"].append(_number(row["Failures/s"]))
            for p in ("50", "95", "99"):
                s.values[f"p{p}"].append(_number(row[f"{p}%"]))
    return series


def plot(prefix: str | Path, run: RunStats, out: str | Path, title: str = "chatstack load test") -> Path:
    """PNG of latency percentiles and throughput over time, and per-RPC p50/p95/p99 at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = _history(Path(f"{prefix}_stats_history.csv"))
    fig, (ax_lat, ax_rps, ax_rpc) = plt.subplots(3, 1, figsize=(11, 13),
                                                 gridspec_kw={"height_ratios": [3, 2, 3]})
    fig.suptitle(title)
    overall = history.get(AGGREGATED)
    if overall and overall.t:
        for key, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            ax_lat.plot(overall.t, overall.values[key], style, color="black", label=f"all {key}")
        ttfts = sorted(name for name in history if name.endswith(TTFT_SUFFIX))[:3]
        streams = [n.removesuffix(TTFT_SUFFIX) for n in ttfts if n.removesuffix(TTFT_SUFFIX) in history]
        busiest = [r.name for r in sorted(run.requests, key=lambda r: -r.requests)
                   if r.name in history and r.name not in streams][:max(0, 6 - len(streams))]
        for name in streams + ttfts + busiest:
            ax_lat.plot(history[name].t, history[name].values["p95"], label=f"{name} p95", alpha=0.8)
        ax_rps.plot(overall.t, overall.values["rps"], label="requests/s", color="tab:blue")
        ax_rps.plot(overall.t, overall.values["fps"], label="failures/s", color="tab:red")
        users = ax_rps.twinx()
        users.plot(overall.t, overall.values["users"], color="gray", alpha=0.5, label="users")
        users.set_ylabel("users")
        users.legend(loc="upper right", fontsize=8)
    ax_lat.set(title="latency percentiles over time (Locust's current window)", xlabel="seconds",
               ylabel="ms")
    if any(not math.isnan(v) and v > 0 for s in history.values() for v in s.values["p95"]):
        ax_lat.set_yscale("log")
    ax_lat.legend(fontsize=8, ncol=2)
    ax_lat.grid(alpha=0.3)
    ax_rps.set(title="throughput", xlabel="seconds", ylabel="per second")
    ax_rps.legend(loc="upper left", fontsize=8)
    ax_rps.grid(alpha=0.3)

    rows = sorted(run.rpcs, key=lambda r: r.name, reverse=True)
    y = list(range(len(rows)))
    bars = ((-0.25, "p50", "tab:green"), (0.0, "p95", "tab:orange"), (0.25, "p99", "tab:red"))
    for offset, key, color in bars:
        values = [getattr(r, key) for r in rows]
        ax_rpc.barh([i + offset for i in y], [0 if math.isnan(v) else v for v in values],
                    height=0.25, label=key, color=color)
    ax_rpc.set_yticks(y, [f"{r.name} ({r.requests})" for r in rows], fontsize=8)
    ax_rpc.set(title="per request name at the end of the run (requests in parentheses)", xlabel="ms")
    if rows and any(r.p99 > 0 for r in rows if not math.isnan(r.p99)):
        ax_rpc.set_xscale("log")
    ax_rpc.legend(fontsize=8)
    ax_rpc.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
