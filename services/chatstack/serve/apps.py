"""Ray Serve application builders, one per service (`import_path: chatstack.serve.apps:<x>_app`).

Each replica is built by its service's own `server.build_spec`, exactly as the standalone
runtime builds it (engine/store, servicer, start, stop); only the metrics go through Ray.
`args` (from the Serve config) are fields of the service's config object; env vars
`CHATSTACK_<SERVICE>_<FIELD>` apply as usual. Deployment options (autoscaling, resources, the
generation deployment's request router) have defaults here and are overridden by the Serve
config's `deployments:` section.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from chatstack.core.config import ServerConfig
from chatstack.core.metrics import MetricFactory, RpcMetrics
from chatstack.core.request_context import configure_logging
from chatstack.core.server import ServiceSpec
from chatstack.gateway import server as gateway_server
from chatstack.gateway.config import GatewayConfig
from chatstack.generation import server as generation_server
from chatstack.generation.config import GenerationConfig
from chatstack.reward import server as reward_server
from chatstack.reward.config import RewardConfig
from chatstack.serve.handle_downstream import HandleDownstream
from chatstack.serve.ingress import ServeIngress, ingress_class
from chatstack.serve.ray_metrics import RayMetricFactory
from chatstack.serve.session_router import DEFAULT_LOAD_FACTOR, ROUTER_PATH
from chatstack.session import server as session_server
from chatstack.session.config import SessionConfig
from chatstack.tokenizer import server as tokenizer_server
from chatstack.tokenizer.config import TokenizerConfig
from chatstack.v1 import chat_pb2, generation_pb2, reward_pb2, session_pb2, tokenizer_pb2

log = logging.getLogger(__name__)

CPU_AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16,
                   "upscale_delay_s": 5, "downscale_delay_s": 30}
ENGINE_AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 32,
                      "upscale_delay_s": 10, "downscale_delay_s": 120}
# A conversation's turns go to the generation replica holding its prefix in vLLM's prefix cache
# (bounded-load consistent hashing on the session id the gateway sends; see session_router).
SESSION_AFFINITY_ROUTING = {"request_router_class": ROUTER_PATH,
                            "request_router_kwargs": {"load_factor": DEFAULT_LOAD_FACTOR}}


def _service(module: Any, name: str) -> Any:
    return module.DESCRIPTOR.services_by_name[name]


class _SpecIngress(ServeIngress):
    """A replica built by its service's own `server.build_spec`, the seam the standalone runtime
    uses: the same engine/store, servicer, start and stop, with metrics recorded through Ray.
    Subclasses name their config class and `build_spec`."""

    config_class: ClassVar[type[ServerConfig]]
    build_spec: ClassVar[Callable[[Any, MetricFactory], ServiceSpec]]

    def make_config(self, args: dict[str, Any]) -> ServerConfig:
        """The service's config from the Serve args (env vars apply as usual)."""
        return self.config_class(**args)

    async def __init__(self, args: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        config = self.make_config(dict(args))
        service = config.service_name()
        configure_logging(config.log_level, service)
        metrics = RayMetricFactory()
        self.rpc_metrics = RpcMetrics(metrics, service)
        self.default_deadline_seconds = config.default_deadline_seconds
        self.spec = type(self).build_spec(config, metrics)
        self.spec.on_fatal = self.mark_fatal  # a dead engine fails health checks: Serve replaces it
        await self.spec.start()  # engines load and warm up; session waits for Redis
        self.servicer = self.spec.servicer

    async def __del__(self) -> None:
        spec: ServiceSpec | None = getattr(self, "spec", None)  # None if __init__ failed early
        if spec is not None:
            await spec.stop()


class _TokenizerBase(_SpecIngress):
    config_class, build_spec = TokenizerConfig, tokenizer_server.build_spec


class _SessionBase(_SpecIngress):
    config_class, build_spec = SessionConfig, session_server.build_spec


class _GenerationBase(_SpecIngress):
    config_class, build_spec = GenerationConfig, generation_server.build_spec


class _RewardBase(_SpecIngress):
    config_class, build_spec = RewardConfig, reward_server.build_spec


def _gateway_over_handles(config: GatewayConfig, metrics: MetricFactory) -> ServiceSpec:
    """The gateway with its backends reached through their Serve deployment handles (no trip
    through the gRPC proxy; see `chatstack.serve.handle_downstream`); its HTTP API is served by
    Serve's HTTP proxy, not a server of its own."""
    return gateway_server.build_spec(config, metrics, HandleDownstream(config), serve_http=False)


class _GatewayBase(_SpecIngress):
    """Also Serve's HTTP ingress: the OpenAI-compatible API, through Serve's HTTP proxy."""

    config_class, build_spec = GatewayConfig, _gateway_over_handles

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The app Serve's HTTP proxy calls, built by `build_spec` in `__init__` (an app with no
        routes when `http_enabled` is off: every path is 404)."""
        return self.spec.http_app or FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def _deployment(name: str, service: Any, base: type, num_cpus: float, autoscaling: dict[str, Any],
                num_gpus: float = 0, routing: dict[str, Any] | None = None, http: bool = False) -> Any:
    """Deployment `name`: `base` plus one method per RPC of the proto `service`; `routing` is
    its request router config (default: Serve's power of two choices); `http`: also an HTTP
    ingress, serving the app `base.__serve_build_asgi_app__` returns."""
    options: dict[str, Any] = {"request_router_config": routing} if routing else {}
    cls = ingress_class(name, service, base)
    return serve.deployment(
        name=name,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        autoscaling_config=autoscaling,
        max_ongoing_requests=256,
        health_check_period_s=5,
        graceful_shutdown_timeout_s=30,
        **options,
    )(serve.ingress()(cls) if http else cls)


TokenizerDeployment = _deployment("TokenizerDeployment", _service(tokenizer_pb2, "TokenizerService"),
                                  _TokenizerBase, 0.5, CPU_AUTOSCALING)
SessionDeployment = _deployment("SessionDeployment", _service(session_pb2, "SessionService"),
                                _SessionBase, 0.5, CPU_AUTOSCALING)
GenerationDeployment = _deployment("GenerationDeployment", _service(generation_pb2, "GenerationService"),
                                   _GenerationBase, 1, ENGINE_AUTOSCALING, routing=SESSION_AFFINITY_ROUTING)
RewardDeployment = _deployment("RewardDeployment", _service(reward_pb2, "RewardService"),
                               _RewardBase, 1, ENGINE_AUTOSCALING)
GatewayDeployment = _deployment("GatewayDeployment", _service(chat_pb2, "ChatService"),
                                _GatewayBase, 0.5, CPU_AUTOSCALING, http=True)

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
