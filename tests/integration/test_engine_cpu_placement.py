"""A vLLM-backed service moves its own threads off the cores its engine's worker is bound to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatstack.core.cpu_placement import engine_cpus
from chatstack.local_stack import engine_cores
from tests.integration.conftest import start_generation_service

pytestmark = pytest.mark.integration


def test_service_threads_stay_off_the_cores_its_engine_worker_is_bound_to(
        models_dir: Path, log_dir: Path) -> None:
    # The shared fixtures turn this off (their two engines cover every core, see
    # local_stack.engine_placement); a service alone with its engine has it on by default.
    if engine_cores(0) == "auto":
        pytest.skip("needs at least 2 allowed CPUs")
    worker_cores = {int(c) for c in engine_cores(0).split(",")}
    proc, _, _ = start_generation_service(models_dir / "lm", log_dir, "--frontend-off-engine-cores",
                                          name="generation-placed")
    try:
        assert proc.proc is not None
        pid = proc.proc.pid
        assert engine_cpus(pid) == worker_cores
        placements = {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}
        assert placements == {frozenset(os.sched_getaffinity(0)) - worker_cores}
    finally:
        assert proc.stop(60) == 0, proc.tail()
