"""Ray Serve application builders, one per service (`import_path: chatstack.serve.apps:<x>_app`).

Each builds a deployment from the same engine/store and servicer classes as the standalone
runtime. `args` (from the Serve config) are fields of the service's config object; env vars
`CHATSTACK_<SERVICE>_<FIELD>` apply as usual. Deployment options (autoscaling, resources) have
defaults here and are overridden by the Serve config's `deployments:` section.
"""

from __future__ import annotations

import logging
from typing import Any

from ray import serve
from ray.serve import Application

from chatstack.core.metrics import RpcMetrics
from chatstack.core.request_context import configure_logging
from chatstack.serve.ingress import ServeIngress, ingress_class
from chatstack.serve.ray_metrics import RayMetricFactory
from chatstack.v1 import chat_pb2, generation_pb2, reward_pb2, session_pb2, tokenizer_pb2

log = logging.getLogger(__name__)

CPU_AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16,
                   "upscale_delay_s": 5, "downscale_delay_s": 30}
ENGINE_AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 32,
                      "upscale_delay_s": 10, "downscale_delay_s": 120}


def _service(module: Any, name: str) -> Any:
    return module.DESCRIPTOR.services_by_name[name]


class _TokenizerBase(ServeIngress):
    async def __init__(self, args: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        from chatstack.tokenizer.config import TokenizerConfig
        from chatstack.tokenizer.engine import TokenizerEngine, TokenizerLimits
        from chatstack.tokenizer.servicer import TokenizerServicer

        config = TokenizerConfig(**args)
        configure_logging(config.log_level, "tokenizer")
        self.rpc_metrics = RpcMetrics(RayMetricFactory(), "tokenizer")
        limits = TokenizerLimits(config.max_batch_items, config.max_text_chars,
                                 config.max_sequence_tokens, config.max_messages)
        self.servicer = TokenizerServicer(
            TokenizerEngine.from_dir(config.model_dir, config.model_name, limits))


class _SessionBase(ServeIngress):
    async def __init__(self, args: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        from chatstack.session.config import SessionConfig
        from chatstack.session.metrics import SessionMetrics
        from chatstack.session.servicer import SessionServicer
        from chatstack.session.store import RedisSessionStore

        config = SessionConfig(**args)
        configure_logging(config.log_level, "session")
        self.rpc_metrics = RpcMetrics(RayMetricFactory(), "session")
        self.store = RedisSessionStore(config, SessionMetrics(RayMetricFactory()))
        await self.store.ping()  # fail the replica start (Serve retries) if Redis is unreachable
        self.servicer = SessionServicer(self.store)

    async def __del__(self) -> None:
        await self.store.close()


class _GenerationBase(ServeIngress):
    async def __init__(self, args: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        from chatstack.generation.config import GenerationConfig
        from chatstack.generation.engine import VllmGenerationEngine
        from chatstack.generation.metrics import GenerationMetrics
        from chatstack.generation.servicer import GenerationServicer

        config = GenerationConfig(**args)
        configure_logging(config.log_level, "generation")
        self.rpc_metrics = RpcMetrics(RayMetricFactory(), "generation")
        self.engine = VllmGenerationEngine(config, GenerationMetrics(RayMetricFactory()))
        self.engine.on_fatal = self.mark_fatal
        await self.engine.start()
        self.servicer = GenerationServicer(self.engine)

    async def __del__(self) -> None:
        await self.engine.close()


class _RewardBase(ServeIngress):
    async def __init__(self, args: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        from chatstack.reward.config import RewardConfig
        from chatstack.reward.engine import VllmRewardEngine
        from chatstack.reward.metrics import RewardMetrics
        from chatstack.reward.servicer import RewardServicer

        config = RewardConfig(**args)
        configure_logging(config.log_level, "reward")
        self.rpc_metrics = RpcMetrics(RayMetricFactory(), "reward")
        self.engine = VllmRewardEngine(config, RewardMetrics(RayMetricFactory()))
        self.engine.on_fatal = self.mark_fatal
        await self.engine.start()
        self.servicer = RewardServicer(self.engine)

    async def __del__(self) -> None:
        await self.engine.close()


class _GatewayBase(ServeIngress):
    async def __init__(self, args: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        from chatstack.gateway.auth import ApiKeyAuthenticator
        from chatstack.gateway.config import GatewayConfig
        from chatstack.gateway.downstream import Downstream
        from chatstack.gateway.metrics import GatewayMetrics
        from chatstack.gateway.orchestrator import ChatOrchestrator
        from chatstack.gateway.servicer import ChatServicer

        # Every backend is reached through this node's Serve gRPC proxy, routed by the
        # `application` metadata (see README: "Gateway -> services on Ray Serve").
        proxy = args.get("serve_proxy_address", "127.0.0.1:9000")
        settings = {k: v for k, v in args.items() if k != "serve_proxy_address"}
        config = GatewayConfig(**{f"{s}_address": proxy for s in
                                  ("tokenizer", "generation", "reward", "session")},
                               via_serve_proxy=True, **settings)
        configure_logging(config.log_level, "gateway")
        self.rpc_metrics = RpcMetrics(RayMetricFactory(), "gateway")
        self.downstream = Downstream(config)
        auth = ApiKeyAuthenticator.from_config(config.api_keys_file, config.api_keys)
        flow = ChatOrchestrator(config, self.downstream, GatewayMetrics(RayMetricFactory()))
        self.servicer = ChatServicer(flow, auth)

    async def __del__(self) -> None:
        await self.downstream.close()


def _deployment(cls: type, name: str, num_cpus: float, autoscaling: dict[str, Any],
                num_gpus: float = 0) -> Any:
    return serve.deployment(
        name=name,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        autoscaling_config=autoscaling,
        max_ongoing_requests=256,
        health_check_period_s=5,
        graceful_shutdown_timeout_s=30,
    )(cls)


TokenizerDeployment = _deployment(
    ingress_class("TokenizerDeployment", _service(tokenizer_pb2, "TokenizerService"), _TokenizerBase),
    "TokenizerDeployment", 0.5, CPU_AUTOSCALING)
SessionDeployment = _deployment(
    ingress_class("SessionDeployment", _service(session_pb2, "SessionService"), _SessionBase),
    "SessionDeployment", 0.5, CPU_AUTOSCALING)
GenerationDeployment = _deployment(
    ingress_class("GenerationDeployment", _service(generation_pb2, "GenerationService"), _GenerationBase),
    "GenerationDeployment", 1, ENGINE_AUTOSCALING)
RewardDeployment = _deployment(
    ingress_class("RewardDeployment", _service(reward_pb2, "RewardService"), _RewardBase),
    "RewardDeployment", 1, ENGINE_AUTOSCALING)
GatewayDeployment = _deployment(
    ingress_class("GatewayDeployment", _service(chat_pb2, "ChatService"), _GatewayBase),
    "GatewayDeployment", 0.5, CPU_AUTOSCALING)

# Application name (as in deploy/ray/serve-config.yaml) -> its deployment.
DEPLOYMENTS = {"tokenizer": TokenizerDeployment, "session": SessionDeployment,
               "generation": GenerationDeployment, "reward": RewardDeployment,
               "gateway": GatewayDeployment}


def tokenizer_app(args: dict[str, Any]) -> Application:
    """Serve application of the tokenizer service."""
    return TokenizerDeployment.bind(dict(args))


def session_app(args: dict[str, Any]) -> Application:
    """Serve application of the session service."""
    return SessionDeployment.bind(dict(args))


def generation_app(args: dict[str, Any]) -> Application:
    """Serve application of the generation service."""
    return GenerationDeployment.bind(dict(args))


def reward_app(args: dict[str, Any]) -> Application:
    """Serve application of the reward service."""
    return RewardDeployment.bind(dict(args))


def gateway_app(args: dict[str, Any]) -> Application:
    """Serve application of the gateway."""
    return GatewayDeployment.bind(dict(args))


GRPC_SERVICER_FUNCTIONS = [
    "chatstack.v1.tokenizer_pb2_grpc.add_TokenizerServiceServicer_to_server",
    "chatstack.v1.session_pb2_grpc.add_SessionServiceServicer_to_server",
    "chatstack.v1.generation_pb2_grpc.add_GenerationServiceServicer_to_server",
    "chatstack.v1.reward_pb2_grpc.add_RewardServiceServicer_to_server",
    "chatstack.v1.chat_pb2_grpc.add_ChatServiceServicer_to_server",
]
