"""`make run`: every chatstack service on localhost with the tiny models.

Ports are fixed so clients and docs can name them; Ctrl-C (or SIGTERM) stops everything.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from chatstack.core.process import ManagedProcess, start_grpc_service


@dataclass(frozen=True)
class LocalService:
    """One service of the local stack."""

    name: str
    module: str
    port: int
    metrics_port: int
    flags: tuple[str, ...]


def local_services(models_dir: Path) -> list[LocalService]:
    """The services `make run` starts, in dependency order."""
    return [
        LocalService("tokenizer", "tokenizer", 50051, 9101, ("--model-dir", str(models_dir / "lm"))),
    ]


def run_local_stack(models_dir: str, run_dir: str) -> int:
    """Start every service, print addresses, wait for Ctrl-C, stop all."""
    models, run = Path(models_dir).resolve(), Path(run_dir).resolve()
    started: list[ManagedProcess] = []
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for svc in local_services(models):
            print(f"starting {svc.name} ...", flush=True)
            started.append(start_grpc_service(
                svc.name, svc.module, svc.port, svc.metrics_port, run / "logs", svc.flags))
            print(f"  {svc.name:<10} grpc 127.0.0.1:{svc.port}   "
                  f"metrics http://127.0.0.1:{svc.metrics_port}/metrics", flush=True)
        print(f"chatstack is up (logs in {run / 'logs'}); Ctrl-C stops all", flush=True)
        while not stop and all(p.alive() for p in started):
            time.sleep(0.5)
        dead = [p.name for p in started if not p.alive()]
        if dead:
            print(f"service(s) exited: {', '.join(dead)}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping ...", flush=True)
        for proc in reversed(started):
            proc.stop()
