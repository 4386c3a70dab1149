"""A Locust User base class for gRPC: gevent-friendly channels and every RPC in Locust's stats.

Locust runs users as gevent greenlets and monkey-patches the standard library when `locust` is
imported. grpcio does its I/O in C, so it must be switched to gevent explicitly
(`grpc.experimental.gevent.init_gevent()`) after the patching and before any channel exists;
otherwise one blocking RPC stalls every user of the process.
"""

from __future__ import annotations

import csv
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc
import grpc.experimental.gevent as grpc_gevent
from gevent import GreenletExit
from locust import User
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

REQUEST_TYPE = "grpc"
UNFINISHED = " (unfinished)"  # suffix of calls cut short by Locust stopping the user
M = TypeVar("M")


@functools.cache
def init_grpc_gevent() -> None:
    """Make grpcio cooperate with gevent (once per process, before the first channel)."""
    grpc_gevent.init_gevent()


def write_final_csv(environment: Any) -> None:
    """Rewrite `--csv`'s stats, failures and exceptions files from the final stats.

    Locust's CSV writer runs once a second and is not run again at shutdown, so calls that end
    in the last second (in-flight streams finishing during --stop-timeout) would be missing from
    `_stats.csv`. Called on `quitting`, when every user has stopped. Each file is replaced
    atomically; Locust's own handle then points at the replaced file and is simply closed.
    """
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix:
        return
    stats = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("_stats.csv", stats.requests_csv), ("_failures.csv", stats.failures_csv),
                          ("_exceptions.csv", stats.exceptions_csv)):
        path = f"{prefix}{suffix}"
        with open(path + ".final", "w", newline="") as f:
            write(csv.writer(f))
        os.replace(path + ".final", path)


class GrpcFailure(Exception):
    """A failed RPC as Locust shows it: `CODE: details` (grpc's own repr is a page long)."""

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> GrpcFailure:
        """`UNAVAILABLE: failed to connect ...` from a grpc.RpcError (also a grpc.Call)."""
        code = err.code() if isinstance(err, grpc.Call) else None
        details = err.details() if isinstance(err, grpc.Call) else str(err)
        return cls(f"{code.name if code else 'UNKNOWN'}: {details}")


class StreamCall(Protocol):
    """A server-streaming call: iterate it for messages; cancel() stops it."""

    def __iter__(self) -> Iterator[Any]: ...
    def cancel(self) -> bool: ...


@dataclass
class StreamResult:
    """What one streaming RPC produced."""

    ok: bool = False  # completed with a final event
    cancelled: bool = False  # we cancelled it on purpose after some deltas
    deltas: int = 0
    final: Any = None  # the `final` payload of the last message, if any
    events: list[Any] = field(default_factory=list)


class GrpcUser(User):
    """Base of the chatstack users: times calls and fires Locust's request event for each."""

    abstract = True

    def __init__(self, environment: Any) -> None:
        init_grpc_gevent()
        super().__init__(environment)
        self._channels: list[grpc.Channel] = []

    # -- channels ---------------------------------------------------------------------------------
    def channel(self, address: str) -> grpc.Channel:
        """A channel of this user (one per user, like one client per real user); closed on stop."""
        channel = grpc.insecure_channel(address)
        self._channels.append(channel)
        return channel

    def on_stop(self) -> None:
        """Close this user's channels."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()

    # -- reporting --------------------------------------------------------------------------------
    def report(self, name: str, start: float, length: int = 0,
               exception: BaseException | None = None) -> None:
        """One entry in Locust's stats: `name`, milliseconds since `start` (a perf_counter)."""
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length, exception=exception, context={})

    def unary(self, name: str, call: Callable[[], M]) -> M | None:
        """Run a unary RPC (a thunk), report it; the response, or None if it failed.

        A call that Locust cuts short by killing the user (a user stopped while it was waking up,
        or a call still running after --stop-timeout) is reported as `name (unfinished)` with the
        time it had run, and no exception: Locust stopped it, not the server. A call stuck that
        long still shows up, as a long `(unfinished)` latency.
        """
        start = time.perf_counter()
        try:
            response = call()
        except grpc.RpcError as err:
            self.report(name, start, 0, GrpcFailure.from_rpc_error(err))
            return None
        except GreenletExit:
            self.report(name + UNFINISHED, start)
            raise
        size = response.ByteSize() if hasattr(response, "ByteSize") else 0
        self.report(name, start, size)
        return response

    def stream(self, name: str, open_call: Callable[[], StreamCall],
               cancel_after_deltas: int = 0) -> StreamResult:
        """Run a server stream of `delta`/`final` events; report `name TTFT` and `name` (the total).

        With `cancel_after_deltas` > 0 the stream is cancelled after that many deltas and reported
        as `name (cancelled)` without an exception: the client walked away, nothing failed.
        """
        result = StreamResult()
        length = 0
        start = time.perf_counter()
        call: StreamCall | None = None
        try:
            call = open_call()
            for event in call:
                length += event.ByteSize()
                result.events.append(event)
                kind = event.WhichOneof("event")
                if kind == "delta":
                    result.deltas += 1
                    if result.deltas == 1:
                        self.report(f"{name} TTFT", start)
                    if cancel_after_deltas and result.deltas >= cancel_after_deltas:
                        call.cancel()
                        result.cancelled = True
                        self.report(f"{name} (cancelled)", start, length)
                        return result
                elif kind == "final":
                    result.final = event.final
        except grpc.RpcError as err:
            self.report(name, start, length, GrpcFailure.from_rpc_error(err))
            return result
        except GreenletExit:
            if call is not None:
                call.cancel()
            self.report(name + UNFINISHED, start, length)
            raise
        if result.final is None:
            self.report(name, start, length, GrpcFailure("stream ended without a final event"))
            return result
        result.ok = True
        self.report(name, start, length)
        return result
