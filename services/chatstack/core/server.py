"""The standalone gRPC runtime: one `grpc.aio` server per service, started the same way.

Lifecycle: bind the port with health NOT_SERVING → start the backend (model load, Redis
connect) → SERVING → on SIGTERM/SIGINT: NOT_SERVING, stop taking new RPCs, let in-flight ones
(streams included) finish within `grace_seconds`, close the backend, exit. If the backend reports
a fatal failure, health goes NOT_SERVING and the process exits non-zero so an orchestrator
restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from chatstack.core.config import ServerConfig
from chatstack.core.interceptor import ServiceInterceptor
from chatstack.core.metrics import MetricsServer, RpcMetrics
from chatstack.core.request_context import configure_logging

log = logging.getLogger(__name__)
Config = TypeVar("Config", bound=ServerConfig)


async def _nothing() -> None:
    return None


@dataclass
class ServiceSpec:
    """What a service plugs into the runtime: its servicers and its backend's lifecycle."""

    #: Full proto names of the services it serves, e.g. "chatstack.v1.TokenizerService".
    service_names: Sequence[str]
    #: Adds the servicers to the server.
    register: Callable[[grpc.aio.Server], None]
    #: The servicer object `register` adds: the Ray Serve runtime serves this same object.
    servicer: Any = None
    #: An ASGI app the service also serves over HTTP (the gateway's OpenAI-compatible API): the
    #: standalone runtime serves it on its own port (in `start`), Ray Serve through its HTTP proxy.
    http_app: Any = None
    #: Makes the backend ready (load a model, connect to Redis); health turns SERVING after it.
    start: Callable[[], Awaitable[None]] = _nothing
    #: Releases the backend after the server stopped.
    stop: Callable[[], Awaitable[None]] = _nothing
    #: Set by the runtime: call with a reason when the backend died (exits non-zero).
    on_fatal: Callable[[str], None] = field(default=lambda reason: None)


class Engine(Protocol):
    """A backend with a lifecycle that may die (the vLLM-backed engines)."""

    on_fatal: Callable[[str], None]

    async def start(self) -> None: ...
    async def close(self) -> None: ...


def servicer_spec(service_name: str, servicer: Any,
                  add_to_server: Callable[[Any, grpc.aio.Server], None],
                  start: Callable[[], Awaitable[None]] = _nothing,
                  stop: Callable[[], Awaitable[None]] = _nothing) -> ServiceSpec:
    """The spec of a service with one generated servicer (`add_<Service>Servicer_to_server`)."""
    return ServiceSpec(service_names=[service_name], servicer=servicer,
                       register=lambda server: add_to_server(servicer, server), start=start, stop=stop)


def engine_service_spec(service_name: str, engine: Engine, servicer: Any,
                        add_to_server: Callable[[Any, grpc.aio.Server], None]) -> ServiceSpec:
    """The spec of a service backed by an engine: SERVING once `engine.start()` returns, and a
    dead engine stops the process with a non-zero exit."""
    spec = servicer_spec(service_name, servicer, add_to_server, start=engine.start, stop=engine.close)
    engine.on_fatal = lambda reason: spec.on_fatal(reason)  # the runtime sets spec.on_fatal later
    return spec


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC channel arguments of every chatstack server, each with why it is set."""
    return [
        # Batch RPCs (64 texts, long prompts) exceed the 4 MiB default; bound both directions.
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # Ping idle connections so dead peers (node gone, NAT dropped) are noticed and their
        # streams cancelled, which aborts the engine request behind them.
        ("grpc.keepalive_time_ms", config.keepalive_time_seconds * 1000),
        ("grpc.keepalive_timeout_ms", config.keepalive_timeout_seconds * 1000),
        # Accept client keepalive pings (gateway → backends) as often as every 10 s, even
        # without active calls, instead of answering them with GOAWAY "too_many_pings".
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Don't let one port be bound by two servers by accident (SO_REUSEPORT).
        ("grpc.so_reuseport", 0),
        *_connection_age(config),
    ]


def _connection_age(config: ServerConfig) -> list[tuple[str, int]]:
    """Bound a connection's life so clients spread over replicas added after they connected
    (HTTP/2 keeps a connection, and a Service's load balancing is per connection)."""
    if not config.max_connection_age_seconds:
        return []
    return [("grpc.max_connection_age_ms", config.max_connection_age_seconds * 1000),
            ("grpc.max_connection_age_grace_ms", config.max_connection_age_grace_seconds * 1000)]


class ServiceRuntime:
    """Runs one service as a standalone gRPC server (see module docstring)."""

    def __init__(
        self,
        config: ServerConfig,
        spec: ServiceSpec,
        registry: CollectorRegistry,
        service: str,
    ) -> None:
        self.config = config
        self.spec = spec
        self.service = service
        self.health = health.aio.HealthServicer()
        self.metrics_server = MetricsServer(registry, config.metrics_host, config.metrics_port)
        self.ready = False
        self.server = grpc.aio.server(
            interceptors=[ServiceInterceptor(RpcMetrics(registry, service),
                                             frozenset(spec.service_names), lambda: self.ready,
                                             config.default_deadline_seconds)],
            options=server_options(config),
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        )
        self.port = 0
        self._stop_requested = asyncio.Event()
        self.fatal_reason: str | None = None
        spec.on_fatal = self._fatal

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in ("", *self.spec.service_names):
            await self.health.set(name, status)

    async def start(self) -> None:
        """Bind, serve health (NOT_SERVING), start the backend, then turn SERVING."""
        self.spec.register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*self.spec.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port = self.server.add_insecure_port(f"{self.config.host}:{self.config.port}")
        if self.port == 0:
            raise OSError(f"could not bind {self.config.host}:{self.config.port}")
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        self.metrics_server.start()
        log.info(
            "%s listening on %s:%d (metrics on :%d); starting backend",
            self.service, self.config.host, self.port, self.metrics_server.port,
        )
        await self.spec.start()
        self.ready = True
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)
        log.info("%s SERVING", self.service)

    def request_stop(self) -> None:
        """Begin a graceful stop (signal handlers call this)."""
        self._stop_requested.set()

    def _fatal(self, reason: str) -> None:
        log.error("backend failed: %s; stopping with a non-zero exit", reason)
        self.fatal_reason = reason
        self.ready = False  # every RPC of the service answers UNAVAILABLE from now on
        self._stop_requested.set()

    async def _report_failure(self) -> None:
        """After a fatal backend error: NOT_SERVING while the server still answers, for
        `fatal_linger_seconds`, so unary health Checks (probes) see it, not only open Watches."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await asyncio.sleep(self.config.fatal_linger_seconds)

    async def stop(self) -> None:
        """NOT_SERVING, drain in-flight RPCs within the grace period, close the backend."""
        await self.health.enter_graceful_shutdown()
        log.info("%s stopping: draining in-flight RPCs (grace %.1fs)", self.service,
                 self.config.grace_seconds)
        try:
            await self.server.stop(self.config.grace_seconds)
        finally:
            try:
                await self.spec.stop()
            finally:
                self.metrics_server.stop()
        log.info("%s stopped", self.service)

    async def run_until_stopped(self) -> int:
        """Start, serve until SIGTERM/SIGINT or a fatal backend error, stop. Returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            start = asyncio.create_task(self.start())
            stop_wait = asyncio.create_task(self._stop_requested.wait())
            done, _ = await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if start in done:
                start.result()  # raise if the backend failed to start
                await stop_wait
            else:
                start.cancel()
                await asyncio.gather(start, return_exceptions=True)
        except Exception:
            log.exception("%s failed to start", self.service)
            await self.stop()
            return 1
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if self.fatal_reason:
            await self._report_failure()
        await self.stop()
        return 1 if self.fatal_reason else 0


def run_service(config: Config, build_spec: Callable[[Config, CollectorRegistry], ServiceSpec]) -> int:
    """Start the orphan reaper, configure logging, build the service's spec (its `build_spec`)
    with a fresh metrics registry, run it.

    The reaper (`chatstack.core.orphan_reaper`) SIGKILLs what the service leaves behind (vLLM's
    engine processes) once it is gone, even after a `kill -9`; call this from the main thread.
    """
    from chatstack.core.orphan_reaper import start_orphan_reaper

    start_orphan_reaper()
    service = config.service_name()
    configure_logging(config.log_level, service)
    registry = CollectorRegistry()

    async def main() -> int:
        runtime = ServiceRuntime(config, build_spec(config, registry), registry, service)
        return await runtime.run_until_stopped()

    if config.event_loop == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())
