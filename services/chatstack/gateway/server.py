"""Entry point of the standalone gateway: `python -m chatstack.gateway`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from chatstack.catalog import GATEWAY
from chatstack.core.metrics import MetricFactory, metric_factory
from chatstack.core.server import ServiceSpec, run_service, servicer_spec
from chatstack.gateway.auth import ApiKeyAuthenticator
from chatstack.gateway.clients import Backends, Transport
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.downstream import Downstream
from chatstack.gateway.flows import GatewayFlows
from chatstack.gateway.http_server import HttpServer
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.openai_api.app import HttpLimits, build_app
from chatstack.gateway.openai_api.http_scope import HttpMetrics
from chatstack.gateway.servicer import ChatServicer
from chatstack.v1 import chat_pb2_grpc

SERVICE_NAME = GATEWAY.proto_service


def build_spec(config: GatewayConfig, registry: CollectorRegistry | MetricFactory,
               transport: Transport | None = None, serve_http: bool = True) -> ServiceSpec:
    """The gateway's spec, its backends over `transport` (default: gRPC channels to the
    configured addresses). It is SERVING once its keys load: downstream outages are reported per
    call (UNAVAILABLE naming the service), not by taking the gateway out of rotation.

    With `http_enabled` the spec carries the OpenAI-compatible API (`http_app`); `serve_http`
    serves it on `http_port` from `start` (Ray Serve's HTTP proxy serves it instead).

    Call it with an event loop running: the downstream channels are `grpc.aio` channels."""
    auth = ApiKeyAuthenticator.from_config(config.api_keys_file, config.api_keys)
    metrics = GatewayMetrics(registry)
    backends = Backends(transport or Downstream(config, metrics.backends), safety=bool(config.safety_address))
    flows = GatewayFlows.build(config, backends, metrics)
    app: FastAPI | None = None
    if config.http_enabled:
        app = build_app(flows, auth, HttpMetrics(metric_factory(registry)), HttpLimits(
            config.max_request_bytes, config.default_deadline_seconds, config.max_deadline_seconds))
    http = HttpServer(app, config.host, config.http_port, config.grace_seconds,
                      config.http_keep_alive_seconds) if app is not None and serve_http else None

    async def start() -> None:
        if http is not None:
            await http.start()

    async def stop() -> None:
        if http is not None:
            await http.stop()
        await flows.close(config.grace_seconds)

    spec = servicer_spec(SERVICE_NAME, ChatServicer(flows, auth),
                         chat_pb2_grpc.add_ChatServiceServicer_to_server, start=start, stop=stop)
    spec.http_app = app
    return spec


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway until SIGTERM."""
    config = GatewayConfig.load(sys.argv[1:] if argv is None else argv)
    return run_service(config, build_spec)


if __name__ == "__main__":
    sys.exit(main())
