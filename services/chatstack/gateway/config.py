"""Configuration of the gateway (env `CHATSTACK_GATEWAY_<FIELD>` or CLI flags)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chatstack.core.config import ServerConfig


class GatewayConfig(ServerConfig):
    """Settings of the gateway: downstream addresses, API keys and chat defaults."""

    model_config = SettingsConfigDict(
        env_prefix="CHATSTACK_GATEWAY_", cli_kebab_case=True, cli_implicit_flags=True,
        extra="ignore",
    )

    port: int = Field(50050, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9100, ge=0, le=65535, description="Prometheus /metrics port.")
    tokenizer_address: str = Field("127.0.0.1:50051", description="host:port of the tokenizer.")
    generation_address: str = Field("127.0.0.1:50052", description="host:port of generation.")
    reward_address: str = Field("127.0.0.1:50053", description="host:port of the reward service.")
    session_address: str = Field("127.0.0.1:50054", description="host:port of the session service.")
    api_keys_file: str = Field(
        "", description="File of API keys, one `<owner>:<sha256 hex of the key>` per line "
        "(e.g. a mounted Secret). Keys are never stored in plain text.")
    api_keys: str = Field(
        "", description="Extra keys as comma-separated `<owner>:<sha256 hex>` entries.")
    default_max_tokens: int = Field(128, ge=1, description="max_tokens when a Chat leaves it 0.")
    max_tokens_limit: int = Field(1024, ge=1, description="Largest max_tokens a Chat may ask.")
    max_best_of: int = Field(8, ge=1, description="Largest best_of.")
    max_message_chars: int = Field(32_000, ge=1, description="Longest user message.")
    default_temperature: float = Field(0.8, ge=0, description="Temperature when unset.")
    single_answer_scoring: Literal["sync", "async", "off"] = Field(
        "sync", description="Reward scoring of a single (not best-of-n) answer: `sync` scores it "
        "before the final message (its latency is the reward call's); `async` stores the answer "
        "and sends the final message at once, then adds the score to the stored turn's metadata "
        "when ready (ChatFinal.reward_status PENDING); `off` never scores it. Best-of-n is always "
        "scored: the ranking chooses the answer.")
    max_pending_scores: int = Field(
        256, ge=1, description="Async scorings in flight at most; beyond it a single answer is "
        "left unscored (counted in chatstack_gateway_deferred_scores_total{outcome=\"dropped\"}).")
    deferred_score_timeout_seconds: float = Field(
        30.0, gt=0, description="Deadline of an async scoring (reward call plus the annotation).")
    rollback_timeout_seconds: float = Field(
        5.0, gt=0, description="Deadline of the calls that undo a failed Chat's session writes.")
