"""StageClock: the wall-clock seconds of each stage of one answer, recorded once it is done."""

from __future__ import annotations

import time

from chatstack.gateway.metrics import GatewayMetrics


class StageClock:
    """Accumulates wall-clock seconds per stage of one call (session_read, template, ttft,
    generation, reward, session_write), then `finish` adds the total and records them all."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        """Add now - since to `stage`; returns now."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now

    def finish(self, metrics: GatewayMetrics) -> dict[str, float]:
        """Record every stage and the total (a successful call's); returns them."""
        self.seconds["total"] = time.perf_counter() - self.start
        for stage, seconds in self.seconds.items():
            metrics.observe_stage(stage, seconds)
        return dict(self.seconds)
