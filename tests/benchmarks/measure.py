"""Measuring helpers the benchmarks share: CPU time of server processes, SSE streams."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime (+ reaped children's) of a process and its live descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


async def sse_events(content: Any) -> AsyncIterator[dict[str, Any]]:
    """The JSON events of a server-sent-event stream, up to `[DONE]`."""
    async for raw in content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        yield json.loads(data)


def machine_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (utime + stime) of every process on the machine, with its title (Ray names
    its workers by what they run: `ray::ServeReplica:generation:...`, `ray::ProxyActor`)."""
    out: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        out[int(entry.name)] = (title.rsplit("/", 1)[-1][:60], (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return out


def report_cpu(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], chats: int,
               label: str) -> None:
    """The processes that used the most CPU during the measured loop, in ms per Chat."""
    used: dict[str, float] = {}
    for pid, (title, seconds) in after.items():
        used[title] = used.get(title, 0.0) + seconds - before.get(pid, (title, 0.0))[1]
    top = sorted(used.items(), key=lambda kv: -kv[1])[:12]
    total = sum(used.values())
    print(f"  {label}: machine CPU {1e3 * total / max(1, chats):.1f} ms per Chat; top processes (ms per Chat):")
    for title, seconds in top:
        print(f"    {1e3 * seconds / max(1, chats):7.1f}  {title}")
