"""Configuration of the gateway (env `CHATSTACK_GATEWAY_<FIELD>` or CLI flags)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from chatstack.catalog import GATEWAY, GATEWAY_HTTP_PORT, GENERATION, REWARD, SESSION, TOKENIZER
from chatstack.core.config import ServerConfig
from chatstack.gateway.replicas.discovery import parse_target
from chatstack.gateway.replicas.routing import RoutingPolicy

_ADDRESS_FORMS = ("`host:port` (one replica), `host:port,host:port` (a static list) or "
                  "`dns:///name:port` (every address of the name, re-resolved: a headless Service).")


class GatewayConfig(ServerConfig):
    """Settings of the gateway: downstream addresses, API keys and chat defaults."""

    model_config = SettingsConfigDict(
        env_prefix="CHATSTACK_GATEWAY_", cli_kebab_case=True, cli_implicit_flags=True,
        extra="ignore",
    )

    port: int = Field(GATEWAY.port, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(GATEWAY.metrics_port, ge=0, le=65535, description="Prometheus /metrics port.")
    http_port: int = Field(GATEWAY_HTTP_PORT, ge=0, le=65535,
                           description="Port of the OpenAI-compatible HTTP API (0 = a free one), on `host`.")
    http_enabled: bool = Field(True, description="Serve the OpenAI-compatible HTTP API.")
    max_request_bytes: int = Field(
        16 << 20, ge=1024, description="Largest HTTP request body (bytes, like gRPC's message limit): "
        "a larger one is refused with 413 before it is read (Content-Length) or as soon as it passes "
        "the limit (chunked), so no client can hold more than this of the gateway's memory.")
    max_deadline_seconds: float = Field(
        600.0, gt=0, description="Longest deadline an HTTP client may ask for (x-chatstack-timeout, "
        "or the OpenAI SDKs' x-stainless-timeout header, seconds); without one, "
        "default_deadline_seconds.")
    http_keep_alive_seconds: float = Field(
        75.0, gt=0, description="How long an idle HTTP keep-alive connection is kept open. Above the "
        "idle timeouts of common clients and proxies (60 s at nginx and cloud load balancers), so "
        "the client closes first: a server that closes first races a client reusing the connection "
        "('Remote end closed connection without response'). uvicorn's default is 5 s.")
    tokenizer_address: str = Field(TOKENIZER.local_address,
        description=f"The tokenizer's replicas: {_ADDRESS_FORMS}")
    generation_address: str = Field(GENERATION.local_address,
        description=f"Generation's replicas: {_ADDRESS_FORMS}")
    reward_address: str = Field(REWARD.local_address,
        description=f"The reward service's replicas: {_ADDRESS_FORMS}")
    session_address: str = Field(SESSION.local_address,
        description=f"The session service's replicas: {_ADDRESS_FORMS}")
    safety_address: str = Field(
        "", description="The safety service's replicas (the guard model and rules), in the same forms; "
        "empty: no safety stage (nothing is moderated).")
    tokenizer_routing: RoutingPolicy = Field("round_robin", description="Tokenizer replica per call.")
    generation_routing: RoutingPolicy = Field(
        "session_affinity", description="Generation replica per call: `session_affinity` sends a "
        "session's turns (and best-of-n candidates) to the replica whose prefix cache holds its "
        "history, unless that replica is over its bounded load.")
    reward_routing: RoutingPolicy = Field("round_robin", description="Reward replica per call.")
    session_routing: RoutingPolicy = Field("round_robin", description="Session replica per call.")
    safety_routing: RoutingPolicy = Field("round_robin", description="Safety replica per call.")
    affinity_load_factor: float = Field(
        0.25, ge=0, description="session_affinity's bound ε: a replica with more than (1+ε) times the "
        "mean in-flight calls passes a session on to the next replica on the ring.")
    resolve_interval_seconds: float = Field(
        15.0, gt=0, description="How often a dns:/// address is resolved again (also at once "
        "after a replica's connection fails).")
    api_keys_file: str = Field(
        "", description="File of API keys, one `<owner>:<sha256 hex of the key>` per line "
        "(e.g. a mounted Secret). Keys are never stored in plain text.")
    api_keys: str = Field(
        "", description="Extra keys as comma-separated `<owner>:<sha256 hex>` entries.")

    @field_validator("tokenizer_address", "generation_address", "reward_address", "session_address",
                     "safety_address")
    @classmethod
    def _valid_address(cls, value: str, info: ValidationInfo) -> str:
        if value or info.field_name != "safety_address":
            parse_target(value, str(info.field_name))
        return value
    safety_input: bool = Field(
        True, description="Check a Chat's input (the conversation's user and tool turns) beside the "
        "engine's prefill: no token reaches the client before it passed; a flagged one aborts "
        "generation. Needs safety_address.")
    safety_output: Literal["stream_first", "holdback", "off"] = Field(
        "stream_first", description="Monitor answers as they stream. stream_first: tokens go out at "
        "once and at most safety_bound_tokens past the start of flagged text reach the client (the "
        "stream waits when checks fall behind); holdback: safety_window_tokens are held until "
        "checked, so no flagged token is delivered, at the cost of that many tokens of delay.")
    safety_bound_tokens: int = Field(32, ge=1, description="stream_first: most tokens past the start "
                                     "of flagged text that may reach the client.")
    safety_window_tokens: int = Field(32, ge=1, description="holdback: tokens held until checked.")
    safety_interval_tokens: int = Field(8, ge=1, description="Tokens of an answer between two checks.")
    safety_context_tokens: int = Field(256, ge=16, description="Tokens of the answer each check reads "
                                       "(a sliding window: text split across deltas is read whole).")
    safety_fail_input: Literal["closed", "open"] = Field(
        "closed", description="When the input cannot be checked (the safety service down or late): "
        "closed refuses the call (UNAVAILABLE / 503, nothing stored); open answers unchecked. Both "
        "count chatstack_gateway_guard_failures_total.")
    safety_fail_output: Literal["closed", "open"] = Field(
        "closed", description="When an answer cannot be checked mid-stream: closed ends the call "
        "with UNAVAILABLE (nothing stored); open lets the rest stream unchecked.")
    safety_categories: list[str] = Field(
        default_factory=list, description="Categories moderated (empty: every one the safety "
        "service knows).")
    safety_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Guard probability per category at or above which it "
        "flags (missing: the safety service's defaults).")
    safety_timeout_seconds: float = Field(
        5.0, gt=0, description="Deadline of one safety check.")
    safety_refusal: str = Field(
        "I can't help with that.", description="What the client is shown when an answer is stopped.")
    default_max_tokens: int = Field(128, ge=1, description="max_tokens when a Chat leaves it 0.")
    max_tokens_limit: int = Field(1024, ge=1, description="Largest max_tokens a Chat may ask.")
    max_best_of: int = Field(8, ge=1, description="Largest best_of.")
    max_tools: int = Field(128, ge=0, description="Most tools one request may offer the model.")
    max_tool_results: int = Field(8, ge=1, le=14, description="Most tool results one Chat or response "
                                  "answers with (a stored exchange reads back in one call of 16 turns).")
    tool_call_parser: Literal["hermes", "llama3_json"] = Field(
        "hermes", description="The model's tool-call format, read back from answers under tool_choice "
        "auto (hermes: <tool_call> JSON </tool_call>, as Hermes/Qwen and the tiny model; llama3_json: "
        "Llama 3.x JSON calls).")
    max_message_chars: int = Field(32_000, ge=1, description="Longest user message.")
    max_conversation_chars: int = Field(
        256_000, ge=1, description="Most characters of a conversation a stateless call (OpenAI "
        "chat completions) sends, all messages together.")
    default_temperature: float = Field(0.8, ge=0, description="Temperature when unset.")
    single_answer_scoring: Literal["sync", "async", "off"] = Field(
        "sync", description="Reward scoring of a single (not best-of-n) answer: `sync` scores it "
        "before the final message (its latency is the reward call's); `async` stores the answer "
        "and sends the final message at once, then adds the score to the stored turn's metadata "
        "when ready (ChatFinal.reward_status PENDING); `off` never scores it. Best-of-n is always "
        "scored: the ranking chooses the answer.")
    capture_preferences: bool = Field(
        False, description="Record preference signals (feedback, best-of candidates, regenerate, edit, "
        "undo) in the session store's preference stream, for reward-model training; off: nothing is "
        "recorded and SubmitFeedback is FAILED_PRECONDITION. See the README's RLHF section.")
    max_pending_preference_writes: int = Field(
        256, ge=1, description="Implicit preference events being written at most; beyond it one is "
        "dropped (chatstack_gateway_preference_events_total{outcome=\"dropped\"}).")
    max_pending_scores: int = Field(
        256, ge=1, description="Async scorings in flight at most; beyond it a single answer is "
        "left unscored (counted in chatstack_gateway_deferred_scores_total{outcome=\"dropped\"}).")
    deferred_score_timeout_seconds: float = Field(
        30.0, gt=0, description="Deadline of an async scoring (reward call plus the annotation).")
    rollback_timeout_seconds: float = Field(
        5.0, gt=0, description="Deadline of the calls that undo a failed Chat's session writes.")
    max_pending_seconds: float = Field(
        3600.0, gt=0, le=3600, description="Longest lease of an exchange's pending user turn (its "
        "call's deadline plus rollback_timeout_seconds, at most this; at most the session "
        "service's max_pending_ms): how long a call that died without its rollback can keep its "
        "session's changes ABORTED before the turn is reaped.")
