"""The shared runtime over real gRPC on loopback, with a test service whose backend we control."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from chatstack.core.config import ServerConfig
from chatstack.core.errors import NotFound
from chatstack.core.server import ServiceRuntime, ServiceSpec

pytestmark = pytest.mark.integration

SERVICE = "chatstack.test.Probe"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ProbeBackend:
    """A backend whose readiness the test decides, with slow, failing and streaming RPCs."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.closed = False

    async def start(self) -> None:
        await self.ready.wait()

    async def stop(self) -> None:
        self.closed = True

    async def sleep(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(float(request.decode()))
        return b"slept"

    async def ticks(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for i in range(int(request.decode())):
            await asyncio.sleep(0.1)
            yield str(i).encode()

    async def missing(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise NotFound("session s-1 not found")

    async def boom(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("bug")

    def register(self, server: grpc.aio.Server) -> None:
        handlers = {
            "Sleep": grpc.unary_unary_rpc_method_handler(self.sleep),
            "Missing": grpc.unary_unary_rpc_method_handler(self.missing),
            "Boom": grpc.unary_unary_rpc_method_handler(self.boom),
            "Ticks": grpc.unary_stream_rpc_method_handler(self.ticks),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def make_runtime(backend: ProbeBackend, grace: float = 5.0) -> ServiceRuntime:
    config = ServerConfig(port=0, metrics_port=0, grace_seconds=grace)
    spec = ServiceSpec(service_names=[SERVICE], register=backend.register,
                       start=backend.start, stop=backend.stop)
    return ServiceRuntime(config, spec, CollectorRegistry(), "probe")


async def health_of(channel: grpc.aio.Channel, service: str = SERVICE) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(reply.status)


async def wait_for_port(runtime: ServiceRuntime) -> str:
    for _ in range(100):
        if runtime.port:
            return f"127.0.0.1:{runtime.port}"
        await asyncio.sleep(0.02)
    raise TimeoutError("runtime did not bind")


async def test_health_is_not_serving_until_the_backend_is_ready() -> None:
    backend = ProbeBackend()
    runtime = make_runtime(backend)
    starting = asyncio.create_task(runtime.start())
    address = await wait_for_port(runtime)
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.sleep(0.2)
        assert await health_of(channel) == NOT_SERVING
        assert await health_of(channel, "") == NOT_SERVING
        backend.ready.set()
        await starting
        assert await health_of(channel) == SERVING
    await runtime.stop()
    assert backend.closed


async def test_sigterm_turns_not_serving_and_lets_in_flight_calls_finish() -> None:
    backend = ProbeBackend()
    backend.ready.set()
    runtime = make_runtime(backend, grace=5.0)
    running = asyncio.create_task(runtime.run_until_stopped())
    address = await wait_for_port(runtime)
    async with grpc.aio.insecure_channel(address) as channel:
        for _ in range(100):
            if await health_of(channel) == SERVING:
                break
            await asyncio.sleep(0.05)
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == SERVING
        unary = asyncio.ensure_future(channel.unary_unary(f"/{SERVICE}/Sleep")(b"1.0"))
        stream = channel.unary_stream(f"/{SERVICE}/Ticks")(b"8")
        first = await stream.read()
        os.kill(os.getpid(), signal.SIGTERM)
        assert (await watch.read()).status == NOT_SERVING
        assert await unary == b"slept"  # in flight when SIGTERM came: finished
        received = [first]
        while (message := await stream.read()) is not grpc.aio.EOF:
            received.append(message)
        assert received == [str(i).encode() for i in range(8)]
        assert await stream.code() == grpc.StatusCode.OK
        assert await running == 0
    assert backend.closed


async def test_errors_map_to_status_codes_and_bugs_are_internal_with_request_id() -> None:
    backend = ProbeBackend()
    backend.ready.set()
    runtime = make_runtime(backend)
    await runtime.start()
    address = f"127.0.0.1:{runtime.port}"
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await channel.unary_unary(f"/{SERVICE}/Missing")(b"")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert missing.value.details() == "session s-1 not found"
        with pytest.raises(grpc.aio.AioRpcError) as boom:
            await channel.unary_unary(f"/{SERVICE}/Boom")(b"", metadata=(("x-request-id", "rid-42"),))
        assert boom.value.code() == grpc.StatusCode.INTERNAL
        assert "rid-42" in (boom.value.details() or "")
    metrics_url = f"http://127.0.0.1:{runtime.metrics_server.port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(metrics_url).read().decode())
    assert 'chatstack_rpc_requests_total{code="NOT_FOUND",method="Probe/Missing",service="probe"} 1.0' in body
    assert 'chatstack_rpc_requests_total{code="INTERNAL",method="Probe/Boom",service="probe"} 1.0' in body
    await runtime.stop()
