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
from tests.polling import await_until

pytestmark = pytest.mark.integration

SERVICE = "chatstack.test.Probe"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ProbeBackend:
    """A backend whose readiness the test decides, with slow, failing and streaming RPCs."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.held = asyncio.Event()  # a Hold call is inside its handler
        self.release = asyncio.Event()  # lets held calls and streams finish
        self.closed = False

    async def start(self) -> None:
        await self.ready.wait()

    async def stop(self) -> None:
        self.closed = True

    async def hold(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.held.set()
        await self.release.wait()
        return b"released"

    async def ticks(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"0"
        await self.release.wait()
        for i in range(1, int(request.decode())):
            yield str(i).encode()

    async def missing(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise NotFound("session s-1 not found")

    async def boom(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("bug")

    def register(self, server: grpc.aio.Server) -> None:
        handlers = {
            "Hold": grpc.unary_unary_rpc_method_handler(self.hold),
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
    await await_until(lambda: bool(runtime.port), 5, "the runtime to bind its port")
    return f"127.0.0.1:{runtime.port}"


async def test_health_is_not_serving_until_the_backend_is_ready() -> None:
    backend = ProbeBackend()
    runtime = make_runtime(backend)
    starting = asyncio.create_task(runtime.start())
    address = await wait_for_port(runtime)
    async with grpc.aio.insecure_channel(address) as channel:
        assert await health_of(channel) == NOT_SERVING  # the backend is held: deterministic
        assert await health_of(channel, "") == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as early:  # RPCs before readiness: UNAVAILABLE
            await channel.unary_unary(f"/{SERVICE}/Missing")(b"")
        assert early.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not ready" in (early.value.details() or "")
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
        async def serving() -> bool:
            return await health_of(channel) == SERVING

        await await_until(serving, 10, "SERVING")
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == SERVING
        unary = asyncio.ensure_future(channel.unary_unary(f"/{SERVICE}/Hold")(b""))
        stream = channel.unary_stream(f"/{SERVICE}/Ticks")(b"8")
        first = await stream.read()
        await backend.held.wait()  # both calls are inside their handlers
        os.kill(os.getpid(), signal.SIGTERM)
        assert (await watch.read()).status == NOT_SERVING
        assert not unary.done()
        backend.release.set()  # only now may the in-flight calls finish, during the stop
        assert await unary == b"released"
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
