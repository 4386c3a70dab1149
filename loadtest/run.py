"""Headless load test: run Locust for a bounded time, write CSV/HTML/PNG reports, gate on SLOs.

    python -m loadtest.run --users 8 --spawn-rate 4 --run-time 60s --out loadtest/reports
    python -m loadtest.run --run-time 20s TokenizerUser -- --tokenizer 127.0.0.1:50051
    python -m loadtest.run --report-only --out loadtest/reports --slo-p95-ms 2000 --slo-error-rate 0.01

Arguments after `--` go to Locust and the locustfile unchanged (targets, --api-key, --max-tokens,
...; loadtest/README.md lists them). Exit status: Locust's own (0, or 1 when a
request failed) without SLOs; with any --slo-* option 0 when every objective is met, 3 when one
is missed (each violation is printed, naming the objective); 2 when Locust made no request
(e.g. it refused a setting, or nothing listens on a target).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from loadtest.report import (
    ProbeSlo,
    RunStats,
    Slo,
    check_probe_slo,
    check_slo,
    plot,
    probe_table,
    read_run,
    summary_table,
)

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
REPO_ROOT = LOCUSTFILE.parents[1]
EXIT_NO_REPORT, EXIT_SLO = 2, 3
MAX_RUN_SECONDS = 3600  # a load test that forgets to stop is not a load test
PROBE_TARGETS = ("gateway", "tokenizer", "generation", "reward", "session")


def parse_timespan(text: str) -> int:
    """Seconds in `90`, `30s`, `2m`, `1h30m` (Locust's format); ValueError otherwise."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not text.strip() or not match:
        raise ValueError(f"not a time span: {text!r} (e.g. 30s, 2m, 1h30m)")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB (from /proc/<pid>/status), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def process_name(pid: int) -> str:
    """The command name of a process (`?` if it is gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This runner's options, and the arguments after `--` for Locust."""
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("classes", nargs="*", metavar="UserClass",
                        help="user classes to run (default: all: ChatUser, OpenAIUser, TokenizerUser, "
                             "GenerationUser, RewardUser, SessionUser)")
    parser.add_argument("-u", "--users", type=int, default=8, help="peak number of users (default 8)")
    parser.add_argument("-r", "--spawn-rate", type=float, default=4,
                        help="users started per second (default 4)")
    parser.add_argument("-t", "--run-time", default="30s", help="how long to run, e.g. 30s, 2m (default 30s)")
    parser.add_argument("--stop-timeout", type=int, default=10,
                        help="seconds in-flight tasks may finish after --run-time (default 10)")
    parser.add_argument("--out", default="loadtest/reports",
                        help="report directory (default loadtest/reports)")
    parser.add_argument("--name", default="chatstack", help="report file prefix (default chatstack)")
    parser.add_argument("--report-only", action="store_true",
                        help="do not run Locust: summarize, plot and check the SLOs of an existing report")
    parser.add_argument("--slo-p95-ms", type=float, help="fail if any RPC's p95 latency exceeds this (ms)")
    parser.add_argument("--slo-ttft-p95-ms", type=float,
                        help="fail if any stream's TTFT p95 exceeds this (ms)")
    parser.add_argument("--slo-error-rate", type=float,
                        help="fail if (failures + unhandled exceptions) / requests exceeds this fraction")
    parser.add_argument("--slo-cheap-tail-ratio", type=float,
                        help="fail if a cheap RPC's (Session.*, Tokenizer.*, >= 100 requests) p99 exceeds "
                        "this many times its p50: on a call that does no model work, a tail is waiting")
    parser.add_argument("--pids", default="", help="comma-separated PIDs whose RSS to print before and after")
    parser.add_argument("--probe", action="store_true",
                        help="beside Locust, measure from outside (loadtest/probe.py): health Check and a "
                             "cheap RPC per service every 100 ms, and a scheduler-gap meter")
    parser.add_argument("--slo-probe-p99-ms", type=float,
                        help="with --probe: fail if a service's health Check p99 (from outside) exceeds this")
    parser.add_argument("--slo-probe-max-ms", type=float,
                        help="with --probe: fail if any service's slowest health Check exceeds this")
    parser.add_argument("--slo-gap-max-ms", type=float,
                        help="with --probe: fail if the gap meter's longest wait for a core exceeds this")
    args = parser.parse_args(argv)
    try:
        args.run_seconds = parse_timespan(args.run_time)
    except ValueError as err:
        parser.error(f"--run-time: {err}")
    if not 0 < args.run_seconds <= MAX_RUN_SECONDS:
        parser.error(f"--run-time must be between 1s and {MAX_RUN_SECONDS}s")
    if args.users < 1 or args.spawn_rate <= 0 or args.stop_timeout < 0:
        parser.error("--users must be >= 1, --spawn-rate > 0, --stop-timeout >= 0")
    try:
        args.pid_list = [int(p) for p in args.pids.split(",") if p.strip()]
    except ValueError:
        parser.error(f"--pids {args.pids!r}: expected comma-separated process ids")
    return args, extra


def locust_command(args: argparse.Namespace, prefix: Path, extra: list[str]) -> list[str]:
    """The headless Locust command line."""
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.run_seconds}s",
            "--stop-timeout", str(args.stop_timeout), "--csv", str(prefix), "--csv-full-history",
            "--html", f"{prefix}.html", "--only-summary", *extra, *args.classes]


def probe_command(args: argparse.Namespace, prefix: Path, extra: list[str]) -> list[str]:
    """The outside probe's command line: as long as the load, the same service addresses."""
    targets: list[str] = []
    for i, arg in enumerate(extra):
        name = arg.removeprefix("--").split("=", 1)[0]
        if name in PROBE_TARGETS:
            targets += [arg] if "=" in arg else extra[i:i + 2]
    return [sys.executable, "-m", "loadtest.probe", "--seconds", str(args.run_seconds),
            "--out", f"{prefix}_probe.json", *targets]


def run_locust(command: list[str], limit: float) -> int:
    """Run Locust; past `limit` seconds stop it (SIGTERM lets it write its reports), then kill it."""
    print("$ " + " ".join(command), flush=True)
    proc = subprocess.Popen(command, cwd=REPO_ROOT)
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        print(f"locust still running after {limit:.0f}s: stopping it", file=sys.stderr, flush=True)
        proc.terminate()
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def print_rss(label: str, pids: list[int],
              before: dict[int, int | None] | None = None) -> dict[int, int | None]:
    """Print each PID's RSS (and the change since `before`); return the readings."""
    readings = {pid: rss_kib(pid) for pid in pids}
    for pid, kib in readings.items():
        text = "gone" if kib is None else f"{kib / 1024:.1f} MiB"
        old = before.get(pid) if before else None
        delta = f" ({(kib - old) / 1024:+.1f} MiB)" if kib is not None and old is not None else ""
        print(f"RSS {label:<6} pid {pid} ({process_name(pid)}): {text}{delta}")
    return readings


def report(prefix: Path, slo: Slo, probe_slo: ProbeSlo | None = None) -> tuple[RunStats, list[str]]:
    """Print the summary (with the outside probe's, if it ran), write the plot and the summary
    file; return the run and SLO violations."""
    run = read_run(prefix)
    table = summary_table(run)
    png = plot(prefix, run, f"{prefix}.png")
    violations, passes = check_slo(run, slo)
    probe_path = Path(f"{prefix}_probe.json")
    if probe_path.is_file():
        probe = json.loads(probe_path.read_text())
        table += "\n\n" + probe_table(probe)
        more_violations, more_passes = check_probe_slo(probe, probe_slo or ProbeSlo())
        violations, passes = violations + more_violations, passes + more_passes
    lines = [table, ""]
    lines += [f"SLO met: {p}" for p in passes]
    lines += [f"SLO VIOLATED: {v}" for v in violations]
    text = "\n".join(lines).rstrip() + "\n"
    Path(f"{prefix}_summary.txt").write_text(text)
    print(text, end="")
    print(f"reports: {prefix}_stats.csv, {prefix}_stats_history.csv, {prefix}.html, {png}, "
          f"{prefix}_summary.txt", flush=True)
    return run, violations


def main(argv: list[str] | None = None) -> int:
    """Run (unless --report-only), report, and return the exit status."""
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / args.name
    slo = Slo(args.slo_p95_ms, args.slo_ttft_p95_ms, args.slo_error_rate, args.slo_cheap_tail_ratio)
    probe_slo = ProbeSlo(args.slo_probe_p99_ms, args.slo_probe_max_ms, args.slo_gap_max_ms)
    code = 0
    if not args.report_only:
        for stale in [*out.glob(f"{args.name}_*.csv"), *out.glob(f"{args.name}_probe.json")]:
            stale.unlink()  # a report must never mix with an older run's
        before = print_rss("before", args.pid_list)
        started = time.monotonic()
        probe = subprocess.Popen(probe_command(args, prefix, extra), cwd=REPO_ROOT,
                                 stdout=subprocess.DEVNULL) if args.probe else None
        try:
            code = run_locust(locust_command(args, prefix, extra), args.run_seconds + args.stop_timeout + 90)
        finally:
            if probe is not None:
                try:
                    probe.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    probe.kill()
        print(f"locust exited with {code} after {time.monotonic() - started:.0f}s", flush=True)
        print_rss("after", args.pid_list, before)
    if not Path(f"{prefix}_stats.csv").is_file() or not read_run(prefix).rpcs:
        print(f"no requests in {prefix}_stats.csv: Locust made none (see its output above)", file=sys.stderr)
        return EXIT_NO_REPORT
    _, violations = report(prefix, slo, probe_slo)
    if slo.active or probe_slo.active:
        return EXIT_SLO if violations else 0
    return code


if __name__ == "__main__":
    sys.exit(main())
