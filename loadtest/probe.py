"""Latency measured from outside the services, beside a load test (issue 24).

A service's own histograms start once its handler runs, so they cannot see a process that waits
for a core: the stall happens before. This probe, a process of its own, measures what a client
and the kernel see:

- every `interval` (100 ms) it calls, per service, the standard health `Check` and one cheap RPC
  (GetModelInfo, GetInfo, a GetSession of a session that does not exist: NOT_FOUND is an answer)
  and records each call's latency from the client's side;
- a scheduler-gap meter, in its own process: a loop of `time.sleep(0.005)` whose overshoots are
  the time a runnable process waited for a core.

    python -m loadtest.probe --seconds 600 --out loadtest/reports/probe.json

Both stop by themselves after `--seconds`; the summary is printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatstack.catalog import SERVICES
from chatstack.core.request_context import OWNER_KEY
from chatstack.v1 import (
    generation_pb2,
    generation_pb2_grpc,
    reward_pb2,
    reward_pb2_grpc,
    safety_pb2,
    safety_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)

GAP_SLEEP_SECONDS = 0.005


@dataclass
class Series:
    """Latencies (seconds) of one probe."""

    samples: list[float] = field(default_factory=list)
    failures: int = 0

    def summary(self) -> dict[str, float | int]:
        """p50, p99, max in ms, and counts."""
        if not self.samples:
            return {"count": 0, "failures": self.failures}
        ordered = sorted(self.samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {"count": len(ordered), "failures": self.failures, "p50_ms": statistics.median(ordered) * 1e3,
                "p99_ms": p99 * 1e3, "max_ms": ordered[-1] * 1e3}


def cheap_call(service: str, channel: grpc.aio.Channel) -> Callable[[float], Awaitable[object]]:
    """One cheap RPC of `service` (an answer of any status counts: it is the latency we want)."""
    if service == "tokenizer":
        stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
        return lambda timeout: stub.GetInfo(tokenizer_pb2.GetInfoRequest(), timeout=timeout)
    if service == "generation":
        gen = generation_pb2_grpc.GenerationServiceStub(channel)
        return lambda timeout: gen.GetModelInfo(generation_pb2.GetModelInfoRequest(), timeout=timeout)
    if service == "reward":
        rew = reward_pb2_grpc.RewardServiceStub(channel)
        info = reward_pb2.RewardServiceGetModelInfoRequest()
        return lambda timeout: rew.GetModelInfo(info, timeout=timeout)
    if service == "safety":
        guard = safety_pb2_grpc.SafetyServiceStub(channel)
        guard_info = safety_pb2.SafetyServiceGetModelInfoRequest()
        return lambda timeout: guard.GetModelInfo(guard_info, timeout=timeout)
    if service == "session":
        ses = session_pb2_grpc.SessionServiceStub(channel)
        return lambda timeout: ses.GetSession(session_pb2.GetSessionRequest(session_id="probe-missing"),
                                              metadata=((OWNER_KEY, "latency-probe"),), timeout=timeout)
    raise ValueError(f"no cheap RPC for {service!r}")


async def probe_service(service: str, address: str, seconds: float, interval: float,
                        check: Series, rpc: Series | None) -> None:
    """Health Check and the cheap RPC every `interval` for `seconds`."""
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        cheap = cheap_call(service, channel) if rpc is not None else None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            tick = time.monotonic()
            for series, call in ((check, lambda t: health.Check(health_pb2.HealthCheckRequest(), timeout=t)),
                                 (rpc, cheap)):
                if series is None or call is None:
                    continue
                started = time.perf_counter()
                try:
                    await call(5.0)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        series.failures += 1
                        continue
                series.samples.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))


def gap_meter(seconds: float, out: multiprocessing.connection.Connection) -> None:
    """Sleep 5 ms at a time for `seconds`; send back each overshoot (seconds) above 1 ms."""
    gaps, loops = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = time.monotonic()
        time.sleep(GAP_SLEEP_SECONDS)
        overshoot = time.monotonic() - before - GAP_SLEEP_SECONDS
        loops += 1
        if overshoot > 0.001:
            gaps.append(overshoot)
    out.send((loops, gaps))
    out.close()


def gap_summary(loops: int, gaps: list[float]) -> dict[str, float | int]:
    """The gap meter's figures: loops, max gap, and how many passed 50/100/500 ms."""
    return {"loops": loops, "max_ms": max(gaps, default=0.0) * 1e3,
            **{f"over_{ms}ms": sum(1 for g in gaps if g > ms / 1e3) for ms in (50, 100, 500)}}


async def run_probes(targets: dict[str, str], seconds: float,
                     interval: float) -> dict[str, dict[str, Series]]:
    """Probe every target at once; returns {service: {"check": Series, "rpc": Series}}."""
    results = {name: {"check": Series(), "rpc": Series()} for name in targets}
    await asyncio.gather(*(probe_service(name, address, seconds, interval, results[name]["check"],
                                         results[name]["rpc"] if name != "gateway" else None)
                           for name, address in targets.items()))
    return results


def measure(targets: dict[str, str], seconds: float, interval: float = 0.1) -> dict[str, object]:
    """Run the probes and the gap meter for `seconds`; the summary."""
    receive, send = multiprocessing.Pipe(duplex=False)
    meter = multiprocessing.get_context("spawn").Process(target=gap_meter, args=(seconds, send), daemon=True)
    meter.start()
    results = asyncio.run(run_probes(targets, seconds, interval))
    loops, gaps = receive.recv() if receive.poll(seconds + 30) else (0, [])
    meter.join(10)
    return {"seconds": seconds, "interval_seconds": interval,
            "services": {name: {kind: s.summary() for kind, s in series.items() if s.samples or s.failures}
                         for name, series in results.items()},
            "scheduler_gaps": gap_summary(loops, gaps)}


def main(argv: list[str] | None = None) -> int:
    """Command line (see module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to probe (default 60)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probes (default 0.1)")
    parser.add_argument("--out", default="", help="write the summary as JSON here too")
    for name, info in SERVICES.items():
        parser.add_argument(f"--{name}", default=info.local_address, help=f"{name} address ('' = skip)")
    args = parser.parse_args(argv)
    targets = {name: getattr(args, name) for name in SERVICES if getattr(args, name)}
    summary = measure(targets, min(args.seconds, 3600.0), args.interval)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
