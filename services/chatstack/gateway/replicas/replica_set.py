"""The replicas of one backend service, as the gateway sees them: one gRPC channel each, health
from the replica itself, the calls open on it, and the policy that picks one per call.

Why not one channel to a Service name: Kubernetes balances a ClusterIP Service per TCP connection
and HTTP/2 keeps one connection, so every call of a gateway would reach the first pod forever, and
a scaled-out backend would get no traffic from the gateways already running.

- Membership: the address's replicas (`discovery`), re-resolved every `resolve_interval` and at
  once after a replica's connection fails. A replica that leaves the name finishes the calls it
  has open before its channel closes; a DNS failure keeps the last known replicas.
- Health: each replica's own gRPC health (a `Watch` stream of the backend's service name, which
  also keeps the connection up). Only SERVING replicas get calls: NOT_SERVING (starting, draining,
  a dead engine) or an unreachable one is skipped until it reports SERVING again. A broken watch is
  retried at once (a server's max connection age ends it on purpose), and only a second failure in
  a row marks the replica down. A replica that is not serving is asked again twice a second
  instead of watched, so the gateway does not hold a draining server open.
- Load: the calls (streams until their end) this gateway has open on each replica, which
  `least_loaded` and the bound of `session_affinity` read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatstack.core import errors
from chatstack.gateway.replicas.discovery import Target, resolve
from chatstack.gateway.replicas.routing import Router

log = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
RETIRE_GRACE_SECONDS = 300.0  # a removed replica's open calls (streams) may run this long
SETTLE_SECONDS = 2.0
NOT_SERVING_POLL_SECONDS = 0.5  # a call waits at most this long for a new set's first health answers


class Replica:
    """One replica: its channel and stub, whether it is serving, and the calls open on it."""

    def __init__(self, address: str, channel: grpc.aio.Channel, stub: Any) -> None:
        self.address = address
        self.channel = channel
        self.stub = stub
        self.serving = False
        self.known = asyncio.Event()  # set at its first health answer (or failure)
        self.in_flight = 0
        self.watch: asyncio.Task[None] | None = None

    def reachable(self) -> bool:
        """Serving, and its channel not failing to connect (noticed before the watch breaks)."""
        return self.serving and self.channel.get_state() != grpc.ChannelConnectivity.TRANSIENT_FAILURE


class BackendMetrics:
    """Per-replica counters and gauges of one gateway's backend calls."""

    def __init__(self, factory: Any) -> None:
        self.requests = factory.counter(
            "chatstack_gateway_backend_requests",
            "Calls the gateway made to a backend replica (a stream counts once), by service, "
            "replica (host:port) and outcome (ok, error, cancelled).",
            ["service", "replica", "outcome"])
        self.in_flight = factory.gauge(
            "chatstack_gateway_backend_in_flight",
            "Calls the gateway has open on a backend replica (what least_loaded and "
            "session_affinity's bound read).", ["service", "replica"])
        self.replicas = factory.gauge(
            "chatstack_gateway_backend_replicas",
            "Replicas of a backend the gateway knows, by state (serving, not_serving).",
            ["service", "state"])


class ReplicaSet:
    """The replicas of one backend (see module docstring); `pick` one per call, `track` the call."""

    def __init__(self, service: str, target: Target, health_service: str, router: Router,
                 new_stub: Callable[[grpc.aio.Channel], Any], channel_options: list[tuple[str, Any]],
                 metrics: BackendMetrics, resolve_interval: float) -> None:
        self.service = service
        self.target = target
        self.health_service = health_service
        self.router = router
        self._new_stub = new_stub
        self._channel_options = channel_options
        self._metrics = metrics
        self._resolve_interval = resolve_interval
        self.replicas: dict[str, Replica] = {}
        self._order: list[str] = []
        self._resolved = asyncio.Event()
        self._resolve_now = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        self._maintainer = asyncio.get_running_loop().create_task(self._maintain())

    # -- calls ----------------------------------------------------------------------------------
    async def pick(self, key: str | None, wait: float) -> Replica:
        """The replica for a call (routing `key`: the session id, or None); BackendUnavailable
        when none is serving. Waits up to `wait` s for the first resolution and health answers."""
        if not self._resolved.is_set() or not all(r.known.is_set() for r in self.replicas.values()):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, SETTLE_SECONDS)):
                    await self._resolved.wait()
                    await asyncio.gather(*(r.known.wait() for r in list(self.replicas.values())))
        eligible = [a for a in self._order if self.replicas[a].reachable()]
        if not eligible:
            self._resolve_now.set()  # perhaps the replicas moved: look again now
            raise errors.BackendUnavailable(
                f"{self.service} service unavailable: no serving replica at {self._describe()}")
        load = {a: self.replicas[a].in_flight for a in eligible}
        return self.replicas[self.router.pick(eligible, load, key)]

    @contextlib.contextmanager
    def track(self, replica: Replica) -> Iterator[None]:
        """Count a call open on `replica` for its duration, and its outcome."""
        replica.in_flight += 1
        self._metrics.in_flight.labels(self.service, replica.address).set(replica.in_flight)
        outcome = "error"
        try:
            yield
            outcome = "ok"
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "cancelled"
            raise
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                self._resolve_now.set()  # a replica went away: look again now
            raise
        finally:
            replica.in_flight -= 1
            self._metrics.in_flight.labels(self.service, replica.address).set(replica.in_flight)
            self._metrics.requests.labels(self.service, replica.address, outcome).inc()

    def _describe(self) -> str:
        name = f"dns {self.target.dns_name}:{self.target.port}" if self.target.dynamic else ",".join(
            self.target.static)
        states = ", ".join(f"{a} {'serving' if r.serving else 'not serving'}"
                           for a, r in self.replicas.items())
        return f"{name} ({states or 'no replicas resolved'})"

    # -- membership -----------------------------------------------------------------------------
    async def _maintain(self) -> None:
        """Resolve now, then every interval or when a failure asks for it."""
        while True:
            try:
                self._update(await resolve(self.target))
            except OSError as exc:  # keep the last known replicas through a DNS failure
                log.warning("%s: resolving %s failed: %s", self.service, self.target.dns_name, exc)
            self._resolved.set()
            if not self.target.dynamic:
                return  # a static list never changes; health watches keep running
            self._resolve_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._resolve_interval):
                    await self._resolve_now.wait()
                await asyncio.sleep(0.2)  # coalesce a burst of failures into one lookup

    def _update(self, addresses: list[str]) -> None:
        for address in addresses:
            if address not in self.replicas:
                channel = grpc.aio.insecure_channel(address, options=self._channel_options)
                replica = Replica(address, channel, self._new_stub(channel))
                replica.watch = asyncio.get_running_loop().create_task(self._watch(replica))
                self.replicas[address] = replica
                log.info("%s: replica %s added", self.service, address)
        for address in [a for a in self.replicas if a not in addresses]:
            replica = self.replicas.pop(address)
            log.info("%s: replica %s removed (%d calls open finish first)", self.service, address,
                     replica.in_flight)
            task = asyncio.get_running_loop().create_task(self._retire(replica))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._order = addresses
        self._count()

    async def _retire(self, replica: Replica) -> None:
        if replica.watch is not None:
            replica.watch.cancel()
        await replica.channel.close(grace=RETIRE_GRACE_SECONDS)  # open calls finish first

    def _count(self) -> None:
        serving = sum(r.serving for r in self.replicas.values())
        self._metrics.replicas.labels(self.service, "serving").set(serving)
        self._metrics.replicas.labels(self.service, "not_serving").set(len(self.replicas) - serving)

    def _set_serving(self, replica: Replica, serving: bool) -> None:
        if serving != replica.serving:
            log.info("%s: replica %s %s", self.service, replica.address,
                     "SERVING" if serving else "not serving")
            replica.serving = serving
            self._count()
            if not serving:
                self._resolve_now.set()
        replica.known.set()

    async def _watch(self, replica: Replica) -> None:
        """Follow the replica's health (see module docstring). A Watch is held only while the
        replica serves: a server's health never ends a Watch, so one held through its SIGTERM
        would keep it draining for its whole grace period. After NOT_SERVING it is dropped and
        opened again every `NOT_SERVING_POLL_SECONDS` (its first reply is the current status)."""
        stub = health_pb2_grpc.HealthStub(replica.channel)
        request = health_pb2.HealthCheckRequest(service=self.health_service)
        failures = 0
        while True:
            serving: bool | None = None
            call = stub.Watch(request)
            try:
                async for reply in call:
                    failures = 0
                    serving = reply.status == SERVING
                    self._set_serving(replica, serving)
                    if not serving:
                        break
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.UNIMPLEMENTED:  # no health service: trust calls
                    self._set_serving(replica, True)
                    return
            finally:
                call.cancel()
            if serving is False:
                await asyncio.sleep(NOT_SERVING_POLL_SECONDS)
                continue
            failures += 1
            if failures >= 2:
                self._set_serving(replica, False)
            await asyncio.sleep(0 if failures == 1 else min(2.0, 0.1 * 2 ** failures))

    async def close(self) -> None:
        """Stop resolving and watching; close every channel."""
        self._maintainer.cancel()
        for replica in self.replicas.values():
            if replica.watch is not None:
                replica.watch.cancel()
        for task in self._closing:
            task.cancel()
        tasks = [self._maintainer, *self._closing,
                 *(r.watch for r in self.replicas.values() if r.watch is not None)]
        await asyncio.gather(*tasks, return_exceptions=True)
        for replica in self.replicas.values():
            await replica.channel.close()
