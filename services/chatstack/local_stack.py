"""`make run`: every chatstack service on localhost with the tiny models.

Ports are fixed so clients and docs can name them; Ctrl-C (or SIGTERM, or the terminal hanging
up) stops everything, also when the output went to a pipe that is gone (`make run | tee log`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

from chatstack.catalog import (
    DEV_MODEL_NAME,
    DEV_REDIS_PORT,
    DEV_STACK_GROUP_NICE,
    GATEWAY,
    GATEWAY_HTTP_PORT,
    GENERATION,
    REWARD,
    SAFETY,
    SESSION,
    TINY_ENGINE_FLAGS,
    TOKENIZER,
    ServiceInfo,
)
from chatstack.core.cpu_placement import allowed_cpus
from chatstack.core.process import ManagedProcess, grpc_service_process, serving, start_grpc_service
from chatstack.core.redis_process import RedisProcess
from chatstack.core.sched_group import Autogroup, yielding_group
from chatstack.core.supervisor import Child, Restarter, redis_child, wait_for_ports
from chatstack.core.vllm_config import VllmEngineConfig


@dataclass(frozen=True)
class LocalService:
    """One service of the local stack."""

    name: str
    module: str
    port: int
    metrics_port: int
    flags: tuple[str, ...]

    @classmethod
    def of(cls, info: ServiceInfo, flags: tuple[str, ...]) -> LocalService:
        """A catalog service on its default ports."""
        return cls(info.name, info.name, info.port, info.metrics_port, flags)

    def ports(self) -> dict[int, str]:
        """Every port the service listens on, and what for."""
        ports = {self.port: f"{self.name} gRPC", self.metrics_port: f"{self.name} metrics"}
        if "--http-port" in self.flags:
            ports[int(self.flags[self.flags.index("--http-port") + 1])] = f"{self.name} HTTP"
        return ports

    def process(self, log_dir: Path) -> ManagedProcess:
        """The service's process, not yet started."""
        return grpc_service_process(self.name, self.module, self.port, self.metrics_port, log_dir, self.flags)


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
        LocalService.of(TOKENIZER, ("--model-dir", str(models_dir / "lm"))),
        LocalService.of(SESSION, ("--redis-url", redis_url)),
        LocalService.of(GENERATION, ("--model", str(models_dir / "lm"), "--served-model-name", DEV_MODEL_NAME,
                                     *TINY_ENGINE_FLAGS, *engine_placement_flags(0))),
        LocalService.of(REWARD, ("--model", str(models_dir / "reward"), *TINY_ENGINE_FLAGS,
                                 *engine_placement_flags(1))),
        # The guard shares the reward engine's cores: both stay off generation's.
        LocalService.of(SAFETY, ("--model", str(models_dir / "guard"), *TINY_ENGINE_FLAGS,
                                 *engine_placement_flags(1))),
        LocalService.of(GATEWAY, ("--api-keys-file", str(keys_file), "--http-port", str(GATEWAY_HTTP_PORT),
                                  "--capture-preferences", "--safety-address", SAFETY.local_address)),
    ]


STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


def _silence(stream: TextIO) -> None:
    """Point `stream`'s file descriptor at /dev/null: what it still buffers, and every later write
    (the interpreter's flush at exit included), then succeeds instead of raising."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    with contextlib.suppress(OSError, ValueError):
        stream.flush()


def say(text: str, err: bool = False) -> None:
    """Print a line to stdout (stderr if `err`) and flush; never raises.

    A supervisor's output can vanish under it: `make run | tee log` and Ctrl-C ends `tee` too (a
    closed pipe), a dropped SSH session hangs the terminal up. Then the stream is silenced for good
    and the supervisor carries on stopping its children.
    """
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        _silence(stream)


class StopSignals:
    """SIGHUP, SIGINT and SIGTERM for a supervisor: each asks it to stop everything.

    While `starting`, the first one aborts the start-up (KeyboardInterrupt, raised where the main
    thread is: waiting for a service, usually); afterwards they are only noted in `requested`, so
    nothing interrupts the wait's end or the cleanup. A signal this process inherited as ignored
    stays ignored (`nohup make run` outlives its terminal, as nohup promises).
    """

    def __init__(self) -> None:
        self.requested = False
        self.starting = True

    def install(self) -> None:
        """Handle the stop signals from now on (call it in the main thread; again after a library
        replaced a handler, as `ray.init` does SIGTERM's)."""
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) != signal.SIG_IGN:
                signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.starting:
            self.starting = False
            raise KeyboardInterrupt


def stop_all(procs: Sequence[ManagedProcess], redis: RedisProcess) -> None:
    """Stop the services in reverse start order, then Redis; one failing to stop (it is already
    gone, say) does not keep the others running."""
    for proc in reversed(procs):
        try:
            proc.stop()
        except Exception as exc:
            say(f"could not stop {proc.name}: {exc!r}", err=True)
    try:
        redis.stop()
    except Exception as exc:
        say(f"could not stop redis-server: {exc!r}", err=True)


ServiceList = Callable[[str, Path], list[LocalService]]


def run_local_stack(models_dir: str, run_dir: str, group_nice: int = DEV_STACK_GROUP_NICE) -> int:
    """Start every service, print addresses, wait for Ctrl-C, stop all."""
    models = Path(models_dir).resolve()
    return supervise(Path(run_dir).resolve(), DEV_REDIS_PORT,
                     lambda redis_url, keys_file: local_services(models, redis_url, keys_file),
                     group_nice=group_nice)


@contextmanager
def announced_group(nice: int) -> Iterator[Autogroup | None]:
    """`yielding_group(nice)`, saying so when it changes anything."""
    with yielding_group(nice) as group:
        if group is not None:
            say(f"scheduling group {group.name} at nice {group.nice} while the stack runs: "
                "every other process on this machine gets a core first")
        yield group


def supervise(run: Path, redis_port: int, services: ServiceList, port_wait: float = 30.0,
              group_nice: int = 0) -> int:
    """Start Redis and `services(redis_url, keys_file)` in order, print addresses, then keep them
    up until a stop signal (SIGHUP, SIGINT, SIGTERM), and stop everything.

    Every child stays in this process's session, hence its scheduling group, which runs at
    `group_nice` meanwhile (`chatstack.core.sched_group`: one group for the whole stack, yielding
    the CPU to the rest of the machine; 0 leaves it alone).

    It starts only once every port it needs is free (waiting up to `port_wait` seconds for a stack
    that is still stopping, then naming the taken ports). A child that exits, Redis included, is
    restarted with a backoff and a loud line (`chatstack.core.supervisor`); the others keep
    running. Every child also dies with this process if it is killed outright (`ManagedProcess`),
    and nothing printed can keep the children from being stopped (`say`). Returns the exit code.
    """
    with announced_group(group_nice):
        return _supervise(run, redis_port, services, port_wait)


def _supervise(run: Path, redis_port: int, services: ServiceList, port_wait: float) -> int:
    started: list[ManagedProcess] = []
    stop = StopSignals()
    stop.install()
    redis = RedisProcess(redis_port, run / "redis")
    logs = run / "logs"
    restarter: Restarter | None = None
    try:
        key, keys_file = dev_api_key(run)
        planned = services(redis.url, keys_file)
        ports = {redis_port: "redis"} | {p: what for svc in planned for p, what in svc.ports().items()}
        wait_for_ports(ports, port_wait, say)
        say(f"starting redis-server on 127.0.0.1:{redis_port} (AOF in {run / 'redis'}) ...")
        redis.start()
        children = [redis_child(redis)]
        for svc in planned:
            say(f"starting {svc.name} ...")
            started.append(start_grpc_service(
                svc.name, svc.module, svc.port, svc.metrics_port, logs, svc.flags))
            children.append(Child(svc.name, partial(_start, svc, logs),
                                  partial(serving, f"127.0.0.1:{svc.port}"), started[-1]))
            say(f"  {svc.name:<10} grpc 127.0.0.1:{svc.port}   "
                f"metrics http://127.0.0.1:{svc.metrics_port}/metrics")
        stop.starting = False
        say(f"chatstack is up (logs in {logs}); Ctrl-C stops all; a service that exits is restarted")
        say(f"dev API key: {key}\n  chat: .venv/bin/chatstack chat --api-key $(cat {run / 'dev-api-key'})\n"
            f"  OpenAI API: http://127.0.0.1:{GATEWAY_HTTP_PORT}/v1 "
            "(OPENAI_BASE_URL; OPENAI_API_KEY = the dev key)\n"
            "  preferences (captured here): .venv/bin/chatstack preferences export "
            f"--out {run / 'pairs.jsonl'}")
        restarter = Restarter(children, lambda line: say(line, err=True))
        while not stop.requested:
            restarter.tick()
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:  # a port taken, a service that did not start
        say(f"chatstack did not start: {exc}", err=True)
        return 1
    finally:
        stop.starting = False
        say("stopping ...")
        procs = [c.proc for c in restarter.children[1:]] if restarter else started
        stop_all(procs, redis)
        say("stopped")


def _start(svc: LocalService, logs: Path) -> ManagedProcess:
    return svc.process(logs).start()

