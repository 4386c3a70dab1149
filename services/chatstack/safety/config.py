"""Configuration of the safety service (env `CHATSTACK_SAFETY_<FIELD>` or CLI flags)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from chatstack.catalog import SAFETY
from chatstack.core.vllm_config import VllmEngineConfig
from chatstack.safety.rules import CATEGORIES


class SafetyConfig(VllmEngineConfig):
    """Settings of the safety service: the guard model's pooling engine, its labels, the rules
    layer, default thresholds and limits."""

    model_config = SettingsConfigDict(
        env_prefix="CHATSTACK_SAFETY_", cli_kebab_case=True, cli_implicit_flags=True,
        extra="ignore",
    )

    port: int = Field(SAFETY.port, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(SAFETY.metrics_port, ge=0, le=65535, description="Prometheus /metrics port.")
    model: str = Field(".models/tiny/guard", description="Guard model directory or hub id: a "
                       "*ForSequenceClassification whose labels are the categories and 'safe' (or "
                       "mapped to them by label_map).")
    max_model_len: int | None = Field(512, ge=16, description="The guard's window in tokens; a longer "
                                      "item is read in overlapping windows.")
    label_map: dict[str, str] = Field(
        default_factory=dict, description="The guard model's labels (config id2label) -> a category "
        "or 'safe', for a model whose labels are named otherwise (e.g. {\"INJECTION\": \"jailbreak\", "
        "\"BENIGN\": \"safe\"}). Labels that are already a category or 'safe' need no entry.")
    rules_file: str = Field("", description="JSON rules file (phrases and patterns per category); "
                            "empty: the built-in rules.")
    thresholds: dict[str, float] = Field(
        default_factory=lambda: dict.fromkeys(CATEGORIES, 0.5),
        description="Default probability at or above which the guard flags a category.")
    window_overlap: int = Field(64, ge=0, description="Tokens shared by consecutive windows of a long "
                                "item (a harmful span this long is seen whole in one window).")
    max_item_tokens: int = Field(8192, ge=16, description="Most tokens of one item; a conversation "
                                 "past it is read from its newest turns, a longer text is refused.")
    max_items: int = Field(64, ge=1, description="Most items per Check.")
    max_messages: int = Field(1024, ge=1, description="Most messages per conversation.")
    max_in_flight: int = Field(
        512, ge=1, description="Guard windows being classified at once; more get RESOURCE_EXHAUSTED."
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        for category, threshold in value.items():
            if category not in CATEGORIES:
                raise ValueError(f"thresholds: {category!r} is not a category ({', '.join(CATEGORIES)})")
            if not 0 < threshold <= 1:
                raise ValueError(f"thresholds.{category}: {threshold} is not in (0, 1]")
        return {**dict.fromkeys(CATEGORIES, 0.5), **value}
