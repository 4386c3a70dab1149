"""Restarter (chatstack.core.supervisor) with fake processes and a fake clock."""

from __future__ import annotations

import socket
from typing import Any

from chatstack.core.supervisor import Child, Restarter, port_taken


class FakeProcess:
    def __init__(self) -> None:
        self.running, self.killed_group = True, False
        self.proc: Any = type("P", (), {"returncode": -9})()

    def alive(self) -> bool:
        return self.running

    def kill_group(self) -> None:
        self.killed_group = True

    def stop(self, timeout: float = 30.0) -> None:
        self.running = False


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def child(spawned: list[FakeProcess], ready: list[bool], clock: Clock) -> Child:
    def spawn() -> Any:
        spawned.append(FakeProcess())
        return spawned[-1]
    return Child("gen", spawn, lambda: ready[0], FakeProcess(), start_timeout=100, started_at=clock())  # type: ignore[arg-type]


def test_a_dead_child_is_restarted_after_a_doubling_backoff_and_reported_back() -> None:
    clock, lines, spawned, ready = Clock(), [], [], [False]
    c = child(spawned, ready, clock)
    r = Restarter([c], lines.append, clock=clock)
    c.proc.running = False  # type: ignore[attr-defined]
    r.tick()
    assert c.state == "backoff" and "!!! gen exited (code -9); restarting it in 1s" in lines[-1]
    r.tick()
    assert not spawned  # not before its backoff
    clock.now = 1.0
    r.tick()
    assert len(spawned) == 1 and c.state == "starting" and c.restarts == 1
    ready[0] = True
    r.tick()
    assert c.state == "up" and "gen is back up (restart 1" in lines[-1]
    spawned[0].running = False  # dies again at once: twice the wait
    clock.now = 2.0
    r.tick()
    assert c.backoff == 2.0
    clock.now = 3.9
    r.tick()
    assert len(spawned) == 1
    clock.now = 4.0
    r.tick()
    assert len(spawned) == 2


def test_the_backoff_resets_once_a_child_stayed_up_and_is_capped() -> None:
    clock, lines, spawned, ready = Clock(), [], [], [True]
    c = child(spawned, ready, clock)
    r = Restarter([c], lines.append, max_backoff=4, stable_after=60, clock=clock)
    for _ in range(5):
        c.proc.running = False  # type: ignore[attr-defined]
        r.tick()
        clock.now += c.backoff
        r.tick()
        r.tick()
    assert c.backoff == 4
    clock.now += 61
    r.tick()
    assert c.backoff == 0


def test_a_child_that_never_gets_ready_is_killed_and_restarted() -> None:
    clock, lines, spawned, ready = Clock(), [], [], [False]
    c = child(spawned, ready, clock)
    r = Restarter([c], lines.append, clock=clock)
    c.proc.running = False  # type: ignore[attr-defined]
    r.tick()
    clock.now = 1
    r.tick()
    clock.now = 102
    r.tick()
    assert "not ready within 100s" in " ".join(lines) and c.state == "backoff"
    assert not spawned[0].running


def test_port_taken_sees_a_listener_and_not_a_free_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_taken(port)
    assert not port_taken(port)
