"""GenerationConfig's generation-only engine arguments."""

from __future__ import annotations

import pytest

from chatstack.generation.config import GenerationConfig
from chatstack.reward.config import RewardConfig


def test_prefix_caching_is_on_by_default_and_reaches_the_engine_args() -> None:
    kwargs = GenerationConfig().engine_kwargs()
    assert (kwargs["stream_interval"], kwargs["enable_prefix_caching"]) == (1, True)


def test_chunked_prefill_is_off_on_cpu_by_default_and_settable() -> None:
    # vLLM 0.32 on CPU kills the engine when a seeded request is split across steps (issue 23).
    assert GenerationConfig().engine_kwargs()["enable_chunked_prefill"] is False
    assert GenerationConfig.load(["--chunked-prefill", "on"]).engine_kwargs()["enable_chunked_prefill"] is True


def test_prefix_caching_can_be_turned_off_by_flag_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GenerationConfig.load(["--no-enable-prefix-caching"]).engine_kwargs()["enable_prefix_caching"] is False
    monkeypatch.setenv("CHATSTACK_GENERATION_ENABLE_PREFIX_CACHING", "false")
    assert GenerationConfig.load([]).enable_prefix_caching is False


def test_the_reward_service_leaves_prefix_caching_to_vllm() -> None:
    # vLLM turns it off for pooling models it would score wrongly; a shared default would force it.
    assert "enable_prefix_caching" not in RewardConfig.model_fields
