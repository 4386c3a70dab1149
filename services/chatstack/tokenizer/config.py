"""Configuration of the tokenizer service (env `CHATSTACK_TOKENIZER_<FIELD>` or CLI flags)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chatstack.catalog import TOKENIZER
from chatstack.core.config import ServerConfig


class TokenizerConfig(ServerConfig):
    """Settings of the tokenizer service."""

    model_config = SettingsConfigDict(
        env_prefix="CHATSTACK_TOKENIZER_", cli_kebab_case=True, cli_implicit_flags=True,
        extra="ignore",
    )

    port: int = Field(TOKENIZER.port, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(TOKENIZER.metrics_port, ge=0, le=65535, description="Prometheus /metrics port.")
    model_dir: str = Field(
        ".models/tiny/lm",
        description="Directory with tokenizer.json (and tokenizer_config.json for the chat "
        "template and special tokens), e.g. the LM's model directory.",
    )
    model_name: str = Field("", description="Name reported by GetInfo (default: dir name).")
    max_batch_items: int = Field(1024, ge=1, description="Most texts/sequences per batch RPC.")
    max_text_chars: int = Field(
        1_000_000, ge=1, description="Longest text accepted, in characters."
    )
    max_sequence_tokens: int = Field(
        1_000_000, ge=1, description="Longest id sequence accepted by Decode."
    )
    max_messages: int = Field(1024, ge=1, description="Most messages per ApplyChatTemplate.")
    max_request_chars: int = Field(
        2_000_000, ge=1, description="Most characters in one request, all texts or messages "
        "together (checked before any tokenizing).")
    max_request_tokens: int = Field(
        2_000_000, ge=1, description="Most token ids in one response (Encode, ApplyChatTemplate) "
        "or one Decode request, checked before the response is built.")
