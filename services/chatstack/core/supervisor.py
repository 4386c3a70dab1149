"""Keeping a local stack's children up: restarts with backoff, as Kubernetes would, and the
port check before a stack starts.

`Restarter` watches children once every tick (the supervisor's loop calls `tick`): a child that
exited is reported loudly and started again after a backoff (1 s, doubling to 30 s; back to 1 s
once it stayed up a minute, like a pod's CrashLoopBackOff), without waiting for it: its readiness
(health SERVING, our Redis answering) is polled on later ticks, so one engine's 20 s start does not
keep the supervisor from noticing another death. What a dead service left in its process group
(a vLLM engine core) is killed before the new one starts.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chatstack.core.process import ManagedProcess
from chatstack.core.redis_process import RedisProcess

Say = Callable[[str], None]


@dataclass
class Child:
    """One supervised process: how to start it (without waiting) and how to tell it is ready."""

    name: str
    spawn: Callable[[], ManagedProcess]
    ready: Callable[[], bool]
    proc: ManagedProcess
    start_timeout: float = 300.0
    state: str = "up"  # up | backoff | starting
    restarts: int = 0
    backoff: float = 0.0
    next_start: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


class Restarter:
    """Restarts children that exit (see module docstring)."""

    def __init__(self, children: Sequence[Child], say: Say, first_backoff: float = 1.0,
                 max_backoff: float = 30.0, stable_after: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children = list(children)
        self.say = say
        self.first_backoff, self.max_backoff, self.stable_after = first_backoff, max_backoff, stable_after
        self.clock = clock

    def tick(self) -> None:
        """Look at every child once: note deaths, start what is due, report what came back."""
        now = self.clock()
        for child in self.children:
            if child.state == "up" and child.backoff and now - child.started_at >= self.stable_after:
                child.backoff = 0.0  # stayed up: the next death restarts at once again
            if child.state in ("up", "starting") and not child.proc.alive():
                self._died(child, now)
            elif child.state == "starting" and now - child.started_at > child.start_timeout:
                self.say(f"!!! {child.name} not ready within {child.start_timeout:.0f}s; killing it")
                child.proc.stop(5)
                self._died(child, now)
            elif child.state == "starting" and child.ready():
                child.state = "up"
                self.say(f"{child.name} is back up (restart {child.restarts}, "
                         f"{now - child.started_at:.1f}s to ready)")
            if child.state == "backoff" and now >= child.next_start:
                child.proc.kill_group()
                child.restarts += 1
                child.proc = child.spawn()
                child.state, child.started_at = "starting", now

    def _died(self, child: Child, now: float) -> None:
        code = child.proc.proc.returncode if child.proc.proc is not None else None
        child.proc.kill_group()  # whatever it started (an engine core) goes with it
        child.backoff = min(self.max_backoff, child.backoff * 2) if child.backoff else self.first_backoff
        child.state, child.next_start = "backoff", now + child.backoff
        self.say(f"!!! {child.name} exited (code {code}); restarting it in {child.backoff:.0f}s "
                 f"(restart {child.restarts + 1}); the rest of the stack keeps running")



def redis_child(redis: RedisProcess) -> Child:
    """A started RedisProcess as a supervised child (ready: *its own* server answers)."""
    assert redis.proc is not None, "start it first"
    return Child("redis", redis.spawn, redis.ready, redis.proc, start_timeout=30)


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on host:port (a socket in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def wait_for_ports(ports: dict[int, str], within: float, say: Say, interval: float = 0.5) -> None:
    """Wait up to `within` seconds until none of `ports` (port -> what needs it) is taken, e.g. by
    a stack still stopping; RuntimeError naming the taken ones otherwise. gRPC servers bind with
    SO_REUSEPORT, so a second stack's service would otherwise share a port with the first's."""
    deadline = time.monotonic() + within
    taken = [p for p in ports if port_taken(p)]
    if taken:
        say(f"waiting up to {within:.0f}s for port(s) {', '.join(map(str, taken))} to be free "
            "(another chatstack stopping?) ...")
    while taken:
        if time.monotonic() >= deadline:
            names = ", ".join(f"{p} ({ports[p]})" for p in taken)
            raise RuntimeError(f"port(s) taken: {names}; is another chatstack running? "
                               f"(`ss -ltnp | grep -E ':({'|'.join(map(str, taken))})'` says by what)")
        time.sleep(interval)
        taken = [p for p in ports if port_taken(p)]
