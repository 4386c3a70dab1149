"""`make run`: every chatstack service on localhost with the tiny models.

Ports are fixed so clients and docs can name them; Ctrl-C (or SIGTERM) stops everything.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from chatstack.core.cpu_placement import allowed_cpus
from chatstack.core.process import ManagedProcess, start_grpc_service
from chatstack.core.redis_process import RedisProcess
from chatstack.core.vllm_config import VllmEngineConfig

REDIS_PORT = 6390  # not 6379, so a system Redis is left alone


@dataclass(frozen=True)
class LocalService:
    """One service of the local stack."""

    name: str
    module: str
    port: int
    metrics_port: int
    flags: tuple[str, ...]


def dev_api_key(run: Path) -> tuple[str, Path]:
    """The local developer's API key (made once, kept in run/dev-api-key) and the hashed keys file."""
    from chatstack.gateway.auth import new_key_line

    key_file, keys = run / "dev-api-key", run / "api-keys"
    if not key_file.is_file() or not keys.is_file():
        run.mkdir(parents=True, exist_ok=True)
        key, line = new_key_line("dev")
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
        keys.write_text(line + "\n")
    return key_file.read_text().strip(), keys


def engine_cores(index: int) -> str:
    """Disjoint cores for the two vLLM engines (generation 0, reward 1): vLLM's 'auto' binding
    would pin both to the same first cores and the reward engine would starve generation."""
    cpus = sorted(allowed_cpus())
    if len(cpus) < 2:
        return "auto"
    half = len(cpus) // 2
    chosen = cpus[:half] if index == 0 else cpus[half:]
    return ",".join(map(str, chosen))


def engine_placement(index: int) -> dict[str, str | bool]:
    """Settings of engine `index` when both engines share this machine: its half of the cores
    (`engine_cores`), and its service's own threads left where the scheduler puts them. The two
    halves cover every core, so moving a service off its engine's cores would only put it on the
    other engine's (one run each: gateway → generation p50 93 ms with it, 66 ms without)."""
    return {"cpu_threads_bind": engine_cores(index), "frontend_off_engine_cores": False}


def engine_placement_flags(index: int) -> tuple[str, ...]:
    """`engine_placement` as service CLI flags."""
    settings = engine_placement(index)
    return VllmEngineConfig(**settings).cli_args(*settings)  # type: ignore[arg-type]


def local_services(models_dir: Path, redis_url: str, keys_file: Path) -> list[LocalService]:
    """The services `make run` starts, in dependency order."""
    return [
        LocalService("tokenizer", "tokenizer", 50051, 9101, ("--model-dir", str(models_dir / "lm"))),
        LocalService("session", "session", 50054, 9104, ("--redis-url", redis_url)),
        LocalService("generation", "generation", 50052, 9102,
                     ("--model", str(models_dir / "lm"), "--cpu-kvcache-space-gib", "1",
                      *engine_placement_flags(0))),
        LocalService("reward", "reward", 50053, 9103,
                     ("--model", str(models_dir / "reward"), "--dtype", "float32",
                      "--cpu-kvcache-space-gib", "1", *engine_placement_flags(1))),
        LocalService("gateway", "gateway", 50050, 9100, ("--api-keys-file", str(keys_file))),
    ]


def run_local_stack(models_dir: str, run_dir: str) -> int:
    """Start every service, print addresses, wait for Ctrl-C, stop all."""
    models, run = Path(models_dir).resolve(), Path(run_dir).resolve()
    started: list[ManagedProcess] = []
    state = {"phase": "starting", "stop": False}

    def on_signal(signum: int, frame: object) -> None:
        # Ctrl-C / SIGTERM: abort a start-up in progress, end the wait, ignore during cleanup.
        state["stop"] = True
        if state["phase"] == "starting":
            state["phase"] = "aborting"
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    redis = RedisProcess(REDIS_PORT, run / "redis")
    try:
        print(f"starting redis-server on 127.0.0.1:{REDIS_PORT} (AOF in {run / 'redis'}) ...", flush=True)
        redis.start()
        key, keys_file = dev_api_key(run)
        for svc in local_services(models, redis.url, keys_file):
            print(f"starting {svc.name} ...", flush=True)
            started.append(start_grpc_service(
                svc.name, svc.module, svc.port, svc.metrics_port, run / "logs", svc.flags))
            print(f"  {svc.name:<10} grpc 127.0.0.1:{svc.port}   "
                  f"metrics http://127.0.0.1:{svc.metrics_port}/metrics", flush=True)
        state["phase"] = "up"
        print(f"chatstack is up (logs in {run / 'logs'}); Ctrl-C stops all", flush=True)
        print(f"dev API key: {key}\n  chat: .venv/bin/chatstack chat --api-key $(cat {run / 'dev-api-key'})",
              flush=True)
        while not state["stop"] and all(p.alive() for p in started):
            time.sleep(0.5)
        dead = [p.name for p in started if not p.alive()]
        if dead and not state["stop"]:
            print(f"service(s) exited: {', '.join(dead)}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        state["phase"] = "stopping"
        print("stopping ...", flush=True)
        for proc in reversed(started):
            proc.stop()
        redis.stop()
        print("stopped", flush=True)
