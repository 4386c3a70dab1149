"""Configuration of the generation service (env `CHATSTACK_GENERATION_<FIELD>` or CLI flags)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chatstack.core.config import ServerConfig


class GenerationConfig(ServerConfig):
    """Settings of the generation service: vLLM engine arguments plus service limits."""

    model_config = SettingsConfigDict(
        env_prefix="CHATSTACK_GENERATION_", cli_kebab_case=True, cli_implicit_flags=True,
        extra="ignore",
    )

    port: int = Field(50052, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="Prometheus /metrics port.")
    # -- engine ---------------------------------------------------------------------------
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
    # -- service limits -------------------------------------------------------------------
    max_in_flight: int = Field(
        128, ge=1, description="Requests admitted at once; more get RESOURCE_EXHAUSTED at once."
    )
    max_n: int = Field(8, ge=1, description="Largest n (choices per request).")
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a request leaves it 0.")
    max_logprobs: int = Field(20, ge=0, description="Largest logprobs count per token.")
