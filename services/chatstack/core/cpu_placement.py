"""Keep a process off the CPU cores a vLLM engine's OpenMP threads are bound to.

On CPU, vLLM binds each model worker's OpenMP threads to cores (`VLLM_CPU_OMP_THREADS_BIND`,
"auto" = the NUMA node's cores minus one reserved "for other processes"), but nothing keeps other
processes off those cores. The service's own threads (gRPC, vLLM's output processing) then
preempt the model mid-step whenever the scheduler puts them there. On 2 cores with 64 streams, the
model worker ran 79 % of the time behind the service against 96 % in-process; kept on the reserved
core, the service streamed 3-28 % more tokens/s (medians of alternating waves on one service,
`tests.benchmarks.bench_placement`).

Linux only (`sched_setaffinity`); elsewhere every function is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _tasks(pid: int) -> list[int]:
    """Thread ids of a process (just `pid` if /proc is unavailable)."""
    try:
        return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return [pid]


def _children(pid: int) -> list[int]:
    """Direct children of a process, from /proc (Linux >= 3.5)."""
    children: list[int] = []
    for tid in _tasks(pid):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        children += [int(c) for c in text.split()]
    return children


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on."""
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()


def engine_cpus(root_pid: int) -> set[int]:
    """Cores that threads of `root_pid`'s descendants are bound to (a strict subset of what this
    process may use): on CPU, the model workers' OpenMP cores; empty on GPU or with 'nobind'."""
    if not hasattr(os, "sched_getaffinity"):
        return set()
    allowed = allowed_cpus()
    bound: set[int] = set()
    for pid in _descendants(root_pid):
        for tid in _tasks(pid):
            try:
                mask = set(os.sched_getaffinity(tid))
            except OSError:  # the thread or process is gone
                continue
            if mask < allowed:
                bound |= mask
    return bound


def pin_process(pid: int, cpus: Iterable[int]) -> None:
    """Move every thread of process `pid` (and the threads they start later) to `cpus`."""
    target = set(cpus)
    for tid in _tasks(pid):
        try:
            os.sched_setaffinity(tid, target)
        except OSError:  # the thread ended meanwhile
            continue


def keep_off_engine_cores(root_pid: int | None = None) -> set[int] | None:
    """Pin this process to the allowed cores that no engine under `root_pid` (default: this
    process) is bound to. Returns the cores it now runs on, or None if it left the placement
    alone (no bound engine found, or the engine holds every allowed core)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    busy = engine_cpus(os.getpid() if root_pid is None else root_pid)
    free = allowed_cpus() - busy
    if not busy or not free:
        return None
    pin_process(os.getpid(), free)
    return free


@contextmanager
def off_engine_cores(root_pid: int | None = None, enabled: bool = True) -> Iterator[set[int] | None]:
    """`keep_off_engine_cores` for the length of a block (e.g. a benchmark's client while it
    drives an engine), then the placement from before; yields the cores used, or None."""
    before = allowed_cpus()
    cores = keep_off_engine_cores(root_pid) if enabled else None
    try:
        yield cores
    finally:
        if cores is not None:
            pin_process(os.getpid(), before)
