"""If the vLLM engine dies, the service turns NOT_SERVING and exits non-zero (to be restarted)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatstack.v1 import generation_pb2, generation_pb2_grpc
from tests.integration.conftest import GENERATION_SERVICE, start_generation_service

pytestmark = pytest.mark.integration


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    found = [int(p) for p in out]
    return found + [d for child in found for d in descendants(child)]


def test_engine_death_turns_not_serving_and_exits_non_zero(models_dir: Path, log_dir: Path) -> None:
    proc, address, _ = start_generation_service(models_dir / "lm", log_dir, name="generation-doomed")
    assert proc.proc is not None
    with grpc.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=GENERATION_SERVICE), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        engine_procs = descendants(proc.proc.pid)
        assert engine_procs, "vLLM runs its engine core in a child process"
        for pid in engine_procs:
            os.kill(pid, signal.SIGKILL)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # A probe's unary Check sees it too (the service lingers NOT_SERVING before exiting),
        # and the service's own RPCs are UNAVAILABLE, not errors of a dead engine.
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=GENERATION_SERVICE), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as err:
            generation_pb2_grpc.GenerationServiceStub(channel).Generate(
                generation_pb2.GenerateRequest(text="hi"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert proc.proc.wait(60) != 0, proc.tail()
