"""The Locust load tests against a real local stack (integration), and their pure helpers (unit).

The locustfile runs in a subprocess: Locust monkey-patches its process with gevent, which must
never happen to the pytest process. `loadtest.settings`, `loadtest.report` and `loadtest.run`
do not import Locust, so the unit tests below import them directly.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatstack.catalog import GATEWAY_HTTP_PORT
from loadtest.report import RpcStats, RunStats, Slo, check_slo, read_run, summary_table
from loadtest.run import parse_timespan
from loadtest.settings import (
    LoadSettings,
    SettingsError,
    check_base_url,
    check_target,
    default_options,
    env_var,
    is_loopback,
    parse_range,
    reachable,
    url_address,
)
from tests.integration.conftest import ALICE_KEY
from tests.stack_fixtures import GatewayProcess

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtest" / "locustfile.py"
# The request names each user class reports: every class must show up in a run.
NAMES_BY_CLASS = {
    "ChatUser": {"CreateSession", "Chat", "Chat best_of", "Chat (cancelled)", "Regenerate", "DeleteSession"},
    "OpenAIUser": {"openai models", "openai chat.completions", "openai responses", "openai conversations.delete"},
    "TokenizerUser": {"Tokenizer.Encode", "Tokenizer.CountTokens", "Tokenizer.ApplyChatTemplate"},
    "GenerationUser": {"Generation.GenerateStream"},
    "RewardUser": {"Reward.Score", "Reward.Rank"},
    "SessionUser": {"Session.CreateSession", "Session.PushTurn", "Session.GetContext", "Session.PopTurn"},
}


def target_args(gateway: GatewayProcess, stack: dict[str, str]) -> list[str]:
    """Locustfile options aiming every user at the fixtures' stack (free loopback ports)."""
    args = ["--gateway", gateway.address, "--openai-base-url", f"http://127.0.0.1:{gateway.http_port}/v1"]
    for service in ("tokenizer", "generation", "reward", "session"):
        args += [f"--{service}", stack[service]]
    return args


def loadtest_env() -> dict[str, str]:
    """The test gateway's key through the env fallback; no stray CHATSTACK_LOADTEST_* from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSTACK_LOADTEST_")}
    env["CHATSTACK_LOADTEST_API_KEY"] = ALICE_KEY
    return env


def stats_rows(prefix: Path) -> dict[str, dict[str, str]]:
    """`<prefix>_stats.csv` by request name."""
    with open(f"{prefix}_stats.csv", newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f) if row["Type"]}


def count(rows: dict[str, dict[str, str]], name: str) -> int:
    """Requests reported under `name` (0 if none)."""
    return int(rows[name]["Request Count"]) if name in rows else 0


# -- against the real stack ---------------------------------------------------------------------


@pytest.mark.integration
def test_every_user_class_makes_requests_without_failures(
    gateway_process: GatewayProcess, stack_addresses: dict[str, str], tmp_path: Path
) -> None:
    prefix = tmp_path / "all"
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "10", "-r", "10",
               "-t", "10s", "--stop-timeout", "30", "--csv", str(prefix), "--only-summary",
               *target_args(gateway_process, stack_addresses),
               "--think-time", "0.2,0.6", "--p-regenerate", "0.5", "--p-best-of", "0.3", "--p-cancel", "0.2"]
    done = subprocess.run(command, cwd=REPO, env=loadtest_env(), capture_output=True, text=True, timeout=120)
    output = done.stderr[-6000:]  # Locust logs and prints its summary on stderr
    assert done.returncode == 0, output
    assert "All users spawned" in done.stderr and '"ChatUser": 4' in done.stderr, output
    assert '"OpenAIUser": 2' in done.stderr, output  # the weights: 4 ChatUser, 2 OpenAIUser, 1 of each other
    rows = stats_rows(prefix)
    for user_class, names in NAMES_BY_CLASS.items():
        assert sum(count(rows, name) for name in names) > 0, f"{user_class} made no requests\n{output}"
    failed = {name: row["Failure Count"] for name, row in rows.items() if row["Failure Count"] != "0"}
    assert failed == {}, Path(f"{prefix}_failures.csv").read_text()
    assert read_run(prefix).exceptions == 0, Path(f"{prefix}_exceptions.csv").read_text()
    # every stream reports its time to first token as an entry of its own, besides the total
    assert count(rows, "Generation.GenerateStream TTFT") >= max(1, count(rows, "Generation.GenerateStream"))
    assert count(rows, "Chat TTFT") >= count(rows, "Chat") + count(rows, "Chat (cancelled)")
    assert count(rows, "Chat TTFT") + count(rows, "Chat best_of TTFT") >= 1, output
    # the OpenAI API over HTTP: both streams, each with its TTFT (a stream may end without text)
    for stream in ("openai chat.completions", "openai responses"):
        assert 1 <= count(rows, f"{stream} TTFT") <= count(rows, stream) + count(rows, f"{stream} (unfinished)"), output


@pytest.fixture(scope="module")
def cancelling_run(gateway_process: GatewayProcess, stack_addresses: dict[str, str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    """`python -m loadtest.run` for 6 s: ChatUsers that cancel every Chat mid-stream, a TokenizerUser."""
    out = tmp_path_factory.mktemp("reports")
    command = [sys.executable, "-m", "loadtest.run", "--users", "3", "--spawn-rate", "3", "--run-time", "6s",
               "--stop-timeout", "30", "--out", str(out), "--name", "cancel",
               "--slo-p95-ms", "60000", "--slo-ttft-p95-ms", "60000", "--slo-error-rate", "0",
               "--pids", str(os.getpid()), "ChatUser", "TokenizerUser",
               "--", *target_args(gateway_process, stack_addresses), "--think-time", "0.1,0.3", "--p-cancel", "1"]
    done = subprocess.run(command, cwd=REPO, env=loadtest_env(), capture_output=True, text=True, timeout=150)
    yield out / "cancel", done


@pytest.mark.integration
def test_runner_writes_reports_and_a_plot_and_cancelled_chats_are_not_failures(
    cancelling_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    prefix, done = cancelling_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = stats_rows(prefix)
    assert int(rows["Chat (cancelled)"]["Request Count"]) >= 1 and rows["Chat (cancelled)"]["Failure Count"] == "0"
    assert int(rows["Chat TTFT"]["Request Count"]) >= 1  # the first deltas did arrive
    assert int(rows["Tokenizer.Encode"]["Request Count"]) >= 1
    for suffix in ("_stats.csv", "_stats_history.csv", ".html", "_summary.txt"):
        assert Path(f"{prefix}{suffix}").stat().st_size > 0, suffix
    png = Path(f"{prefix}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    # the per-RPC table, the SLO verdicts and the RSS lines are printed
    assert "Chat (cancelled)" in done.stdout and "TTFT p95" in done.stdout
    assert "SLO met: p95 latency <= 60000 ms" in done.stdout
    assert "SLO met: TTFT p95 <= 60000 ms" in done.stdout and "SLO met: error rate 0.0000" in done.stdout
    assert f"RSS before pid {os.getpid()}" in done.stdout and f"RSS after  pid {os.getpid()}" in done.stdout


@pytest.mark.integration
@pytest.mark.parametrize(("flag", "objective"), [("--slo-p95-ms", "p95 latency of "),
                                                 ("--slo-ttft-p95-ms", "TTFT p95 of Chat"),
                                                 ("--slo-error-rate", "error rate")])
def test_slo_mode_fails_naming_the_objective_an_impossible_threshold_misses(
    cancelling_run: tuple[Path, subprocess.CompletedProcess[str]], flag: str, objective: str
) -> None:
    prefix, _ = cancelling_run
    impossible = "-1" if flag == "--slo-error-rate" else "0.001"
    command = [sys.executable, "-m", "loadtest.run", "--report-only", "--out", str(prefix.parent),
               "--name", prefix.name, flag, impossible]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stdout + done.stderr
    violated = [line for line in done.stdout.splitlines() if line.startswith("SLO VIOLATED")]
    assert violated and all(flag in line for line in violated) and any(objective in line for line in violated)
    lenient = subprocess.run([*command[:-1], "1" if flag == "--slo-error-rate" else "600000"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "SLO VIOLATED" not in lenient.stdout and "SLO met" in lenient.stdout


# -- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "local"), [
    ("127.0.0.1:50050", True), ("127.8.9.1:1", True), ("localhost:50051", True), ("[::1]:50052", True),
    ("dns:///localhost:50053", True), ("ipv4:127.0.0.1:1", True), ("unix:/tmp/s.sock", True),
    ("10.0.0.5:50050", False), ("example.com:443", False), ("[2001:db8::1]:50050", False),
    ("0.0.0.0:50050", False),
])
def test_only_loopback_targets_count_as_local(address: str, local: bool) -> None:
    assert is_loopback(address) is local


def test_a_non_loopback_target_is_refused_unless_explicitly_allowed() -> None:
    with pytest.raises(SettingsError, match=r"--gateway 10\.0\.0\.5:50050: not a loopback address"):
        check_target("gateway", "10.0.0.5:50050", allow_remote=False)
    assert check_target("gateway", "10.0.0.5:50050", allow_remote=True) == "10.0.0.5:50050"
    options = default_options()
    options.session = "db.internal:50054"
    with pytest.raises(SettingsError, match="--session"):
        LoadSettings.from_options(options)


def test_a_target_nothing_listens_on_is_unreachable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        assert reachable(address, timeout=2)
    assert not reachable(address, timeout=2)  # closed now


def test_defaults_are_the_make_run_ports_and_the_dev_key_file() -> None:
    settings = LoadSettings.from_options(None)
    assert (settings.gateway, settings.tokenizer, settings.generation, settings.reward, settings.session) == (
        "127.0.0.1:50050", "127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053", "127.0.0.1:50054")
    assert settings.api_key_file == str(REPO / ".run" / "dev-api-key")
    assert settings.think_time == (0.5, 2.0)
    assert settings.openai_base_url == f"http://127.0.0.1:{GATEWAY_HTTP_PORT}/v1" and settings.openai_turns == (2, 3)
    assert env_var("openai-base-url") == "CHATSTACK_LOADTEST_OPENAI_BASE_URL"
    assert settings.target("openai") == (f"127.0.0.1:{GATEWAY_HTTP_PORT}", "--openai-base-url URL")
    assert settings.target("session") == ("127.0.0.1:50054", "--session HOST:PORT")


@pytest.mark.parametrize(("url", "address"), [
    ("http://127.0.0.1:8080/v1/", "127.0.0.1:8080"), ("http://localhost/v1", "localhost:80"),
    ("https://127.0.0.2/v1", "127.0.0.2:443"), ("http://[::1]:8080/v1", "[::1]:8080"),
])
def test_an_openai_base_url_on_loopback_is_accepted_without_its_trailing_slash(url: str, address: str) -> None:
    assert check_base_url("openai-base-url", url, allow_remote=False) == url.rstrip("/")
    assert url_address(url) == address


@pytest.mark.parametrize(("url", "message"), [
    ("http://10.0.0.5:8080/v1", "not a loopback address"), ("http://example.com/v1", "not a loopback address"),
    ("http://0.0.0.0:8080/v1", "not a loopback address"), ("http://127.0.0.1.nip.io/v1", "not a loopback address"),
    ("http://[2001:db8::1]:8080/v1", "not a loopback address"),
    ("127.0.0.1:8080/v1", "expected an http:// or https:// URL"), ("ftp://127.0.0.1/v1", "expected an http://"),
    ("http:///v1", "expected an http://"), ("http://127.0.0.1:port/v1", "not a URL"),
    ("http://user:secret@127.0.0.1:8080/v1", "no credentials"), ("", "expected an http://"),
])
def test_an_openai_base_url_elsewhere_or_malformed_is_refused_naming_the_option(url: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"^--openai-base-url .*{message}"):
        check_base_url("openai-base-url", url, allow_remote=False)
    options = default_options()
    options.openai_base_url = url
    with pytest.raises(SettingsError, match="--openai-base-url"):
        LoadSettings.from_options(options)


def test_a_remote_openai_base_url_needs_allow_remote_and_openai_turns_are_checked() -> None:
    options = default_options()
    options.openai_base_url, options.allow_remote = "https://api.example.com/v1", True
    assert LoadSettings.from_options(options).openai_base_url == "https://api.example.com/v1"
    options.openai_turns = "0,2"
    with pytest.raises(SettingsError, match="--openai-turns"):
        LoadSettings.from_options(options)


def test_a_missing_api_key_file_is_a_clear_error(tmp_path: Path) -> None:
    options = default_options()
    options.api_key_file = str(tmp_path / "none")
    with pytest.raises(SettingsError, match="no API key: pass --api-key"):
        LoadSettings.from_options(options).api_key()
    (tmp_path / "key").write_text("the-key\n")
    options.api_key_file = str(tmp_path / "key")
    assert LoadSettings.from_options(options).api_key() == "the-key"


def test_ranges_and_time_spans_parse_or_name_the_option() -> None:
    assert parse_range("0.5,2", "think-time") == (0.5, 2.0) and parse_range("1", "think-time") == (1.0, 1.0)
    with pytest.raises(SettingsError, match="--think-time"):
        parse_range("2,1", "think-time")
    assert [parse_timespan(t) for t in ("30s", "90", "2m", "1h30m")] == [30, 90, 120, 5400]
    with pytest.raises(ValueError, match="not a time span"):
        parse_timespan("soon")


def rpc(name: str, requests: int, failures: int = 0, p95: float = 100.0) -> RpcStats:
    return RpcStats(name, requests, failures, 1.0, p95 / 2, p95, p95 * 1.2, p95 / 2, p95 * 1.5)


def test_slo_check_names_each_missed_objective_and_ignores_ttft_entries_as_requests() -> None:
    run = RunStats([rpc("Chat", 10, failures=1, p95=900.0), rpc("Chat TTFT", 9, p95=300.0),
                    rpc("Tokenizer.Encode", 90, p95=5.0)], None, exceptions=1)
    assert run.total_requests == 100 and run.total_errors == 2
    violations, _ = check_slo(run, Slo(p95_ms=500, ttft_p95_ms=200, error_rate=0.01))
    assert violations == ["p95 latency of Chat is 900 ms > 500 ms (--slo-p95-ms)",
                          "TTFT p95 of Chat is 300 ms > 200 ms (--slo-ttft-p95-ms)",
                          "error rate 0.0200 (2 of 100 requests) > 0.01 (--slo-error-rate)"]
    violations, passes = check_slo(run, Slo(p95_ms=1000, ttft_p95_ms=400, error_rate=0.05))
    assert violations == [] and len(passes) == 3
    assert check_slo(RunStats([], None, 0), Slo(error_rate=1))[0] == ["no requests were made: every objective is unmet"]
    table = summary_table(run)
    assert table.splitlines()[0].split()[:4] == ["RPC", "requests", "failures", "RPS"]
    assert "Chat TTFT" not in table and "unhandled exception" in table


def test_cheap_tail_ratio_gates_only_cheap_rpcs_with_enough_samples() -> None:
    def stats(name: str, requests: int, p50: float, p99: float) -> RpcStats:
        return RpcStats(name, requests, 0, 1.0, p50, p99, p99, p50, p99)

    run = RunStats([stats("Session.GetContext", 500, 3.0, 1100.0), stats("Tokenizer.Encode", 400, 2.0, 8.0),
                    stats("Session.CreateSession", 5, 3.0, 900.0), stats("Chat", 500, 90.0, 2000.0)], None, 0)
    violations, passes = check_slo(run, Slo(cheap_tail_ratio=5))
    assert violations == ["p99 of Session.GetContext is 366.7x its p50 (1100 vs 3.0 ms) > 5x "
                          "(--slo-cheap-tail-ratio)"]
    assert passes == []
    calm = RunStats([stats("Session.GetContext", 500, 3.0, 12.0), stats("Chat", 500, 90.0, 2000.0)], None, 0)
    violations, passes = check_slo(calm, Slo(cheap_tail_ratio=5))
    assert violations == [] and passes == ["p99 <= 5x p50 for every cheap RPC (worst: Session.GetContext "
                                           "12 vs 3.0 ms)"]
    few = RunStats([stats("Session.GetContext", 20, 3.0, 12.0), stats("Chat", 500, 90.0, 2000.0)], None, 0)
    assert check_slo(few, Slo(cheap_tail_ratio=5))[0] == [
        "no cheap RPC (Session.*, Tokenizer.*) had 100 requests (--slo-cheap-tail-ratio)"]
