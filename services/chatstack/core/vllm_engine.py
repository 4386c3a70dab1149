"""VllmEngine: what the generation and reward engines share around vLLM's `AsyncLLM`.

Start the engine off the event loop, warm it, then watch it (a dead engine reports itself through
`on_fatal`, which the runtime turns into NOT_SERVING and an exit); admit work by an in-flight
bound, refused at once past it (RESOURCE_EXHAUSTED); tokenize large inputs off the event loop; shut
it all down on close. Each engine adds its own calls (generate, or classify) on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from chatstack.core.errors import BackendUnavailable, InvalidRequest, Overloaded
from chatstack.core.model_version import model_version
from chatstack.core.offload import CpuOffload
from chatstack.core.vllm_config import VllmEngineConfig, engine_args, engine_started, engine_validation_errors


class _Gauge(Protocol):
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class AdmissionMetrics(Protocol):
    """The metrics admission keeps: work in flight, and work refused."""

    in_flight: _Gauge
    rejected: _Counter


class VllmEngine:
    """An AsyncLLM with its lifecycle, admission and offload (see module docstring). `service`
    names it in messages; `offload_workers` bounds the tokenizing threads."""

    service = "engine"

    def __init__(self, config: VllmEngineConfig, metrics: AdmissionMetrics,
                 offload_workers: int | None = None) -> None:
        self.engine_config = config
        self.admission_metrics = metrics
        self.llm: Any = None
        self.tokenizer: Any = None
        self.max_model_len = 0
        self.in_flight = 0
        self.model_name = config.served_model_name or config.model
        self.model_version = model_version(config.model)
        self.chars_per_token = 1
        self.offload = CpuOffload() if offload_workers is None else CpuOffload(workers=offload_workers)
        self._watchdog: asyncio.Task[None] | None = None
        self.on_fatal: Callable[[str], None] = lambda reason: None

    async def _start_llm(self, **overrides: Any) -> None:
        """Build the AsyncLLM (model load: ~20 s on CPU with the tiny model) off the event loop."""
        from vllm.v1.engine.async_llm import AsyncLLM

        stat_loggers = overrides.pop("stat_loggers", None)
        args = engine_args(self.engine_config, **overrides)
        self.llm = await asyncio.to_thread(AsyncLLM.from_engine_args, args, stat_loggers=stat_loggers)
        self.max_model_len = int(self.llm.model_config.max_model_len)

    def _watch(self) -> None:
        """Once the engine is up and warm: watch it (and keep this process off its cores)."""
        self._watchdog = engine_started(self.engine_config, self.llm, self.on_fatal)

    async def close(self) -> None:
        """Shut the engine down."""
        if self._watchdog:
            self._watchdog.cancel()
        if self.llm is not None:
            await asyncio.to_thread(self.llm.shutdown)
            self.llm = None
        self.offload.close()

    @contextmanager
    def admitted(self, units: int, noun: str) -> Iterator[None]:
        """`units` of work in flight for the block, or Overloaded at once past `max_in_flight`."""
        limit = self.engine_config.max_in_flight
        if self.in_flight + units > limit:
            self.admission_metrics.rejected.inc()
            raise Overloaded(f"{self.service} is at its limit of {limit} in-flight {noun}; retry later")
        self.in_flight += units
        self.admission_metrics.in_flight.inc(units)
        try:
            yield
        finally:
            self.in_flight -= units
            self.admission_metrics.in_flight.dec(units)

    async def pool(self, ids: list[int], params: Any, request_id: str, aborted: _Counter) -> Any:
        """One request on the pooling runner: its output tensor. A dead engine is reported
        (`died`), a request the engine refuses is InvalidRequest, and a request that ends without
        an output (cancelled, or its deadline passed) is counted in `aborted`."""
        from vllm.v1.engine.exceptions import EngineDeadError

        data: Any = None
        try:
            async for out in self.llm.encode({"prompt_token_ids": ids}, params, request_id):
                data = out.outputs.data
        except EngineDeadError as exc:
            raise self.died(exc) from exc
        except engine_validation_errors() as exc:  # whatever rule vLLM adds: the request's fault
            raise InvalidRequest(f"request refused by the engine: {exc}") from exc
        finally:
            if data is None:
                aborted.inc()
        return data

    def died(self, exc: BaseException) -> BackendUnavailable:
        """The engine died under a request: report it (the runtime restarts the service) and the
        request's error."""
        self.on_fatal(f"vLLM engine died: {exc}")
        return BackendUnavailable(f"the {self.service} engine died; the service is restarting")
