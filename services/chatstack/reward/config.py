"""Configuration of the reward service (env `CHATSTACK_REWARD_<FIELD>` or CLI flags)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chatstack.catalog import REWARD
from chatstack.core.vllm_config import VllmEngineConfig


class RewardConfig(VllmEngineConfig):
    """Settings of the reward service: vLLM pooling-engine arguments plus limits."""

    model_config = SettingsConfigDict(
        env_prefix="CHATSTACK_REWARD_", cli_kebab_case=True, cli_implicit_flags=True,
        extra="ignore",
    )

    port: int = Field(REWARD.port, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(REWARD.metrics_port, ge=0, le=65535, description="Prometheus /metrics port.")
    model: str = Field(".models/tiny/reward", description="Reward model directory or hub id "
                       "(a *ForSequenceClassification with num_labels=1 and a chat template).")
    max_in_flight: int = Field(
        512, ge=1, description="Items being scored at once; more get RESOURCE_EXHAUSTED at once."
    )
    max_batch_items: int = Field(256, ge=1, description="Most items per ScoreBatch.")
    max_candidates: int = Field(64, ge=1, description="Most candidates per Rank.")
    max_messages: int = Field(1024, ge=1, description="Most messages per conversation.")
