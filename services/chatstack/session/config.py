"""Configuration of the session service (env `CHATSTACK_SESSION_<FIELD>` or CLI flags)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chatstack.catalog import SESSION
from chatstack.core.config import ServerConfig


class SessionConfig(ServerConfig):
    """Settings of the session service."""

    model_config = SettingsConfigDict(
        env_prefix="CHATSTACK_SESSION_", cli_kebab_case=True, cli_implicit_flags=True,
        extra="ignore",
    )

    port: int = Field(SESSION.port, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(SESSION.metrics_port, ge=0, le=65535, description="Prometheus /metrics port.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (redis:// or rediss://).")
    key_prefix: str = Field("cs:", description="Prefix of every Redis key this service writes.")
    pool_size: int = Field(64, ge=1, description="Most Redis connections in the pool.")
    redis_timeout_seconds: float = Field(
        2.0, gt=0, description="Longest wait for one Redis round trip (cut to the RPC deadline)."
    )
    redis_connect_timeout_seconds: float = Field(1.0, gt=0, description="TCP connect timeout.")
    max_turns: int = Field(10_000, ge=0, description="Most turns per session (0 = unlimited).")
    max_turns_policy: Literal["reject", "evict_oldest"] = Field(
        "reject",
        description="At max_turns: 'reject' the push (RESOURCE_EXHAUSTED) or 'evict_oldest' turn.",
    )
    max_pending_ms: int = Field(
        3_600_000, ge=0, description="Longest lease of a pending turn or session (pending_ms): how "
        "long a failed call's user turn can hold its session's changes off before it is reaped.")
    max_pop_turns: int = Field(64, ge=1, description="Most turns one PopTurn removes (count).")
    max_content_bytes: int = Field(256 * 1024, ge=1, description="Largest turn content (UTF-8).")
    max_system_prompt_bytes: int = Field(64 * 1024, ge=1, description="Largest system prompt.")
    max_metadata_entries: int = Field(64, ge=0, description="Most metadata entries per session or turn.")
    max_metadata_key_bytes: int = Field(128, ge=1, description="Longest metadata key (UTF-8).")
    max_metadata_bytes: int = Field(
        16 * 1024, ge=1, description="Largest metadata of a session or turn: keys plus values (UTF-8).")
    default_ttl_seconds: int = Field(
        7 * 24 * 3600, ge=1, description="Idle TTL of a session; refreshed on every use."
    )
    max_ttl_seconds: int = Field(30 * 24 * 3600, ge=1, description="Largest TTL a caller may ask.")
    preferences_max_events: int = Field(
        1_000_000, ge=1, description="Preference events kept in the stream (about: trimmed by whole nodes).")
    preferences_retention_days: float = Field(
        90, gt=0, description="Preference events older than this leave the stream.")
    preferences_max_event_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest preference event (its prompt, candidates and reason).")
