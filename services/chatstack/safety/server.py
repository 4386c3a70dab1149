"""Entry point of the standalone safety service: `python -m chatstack.safety`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from chatstack.catalog import SAFETY
from chatstack.core.metrics import MetricFactory
from chatstack.core.server import ServiceSpec, engine_service_spec, run_service
from chatstack.safety.config import SafetyConfig
from chatstack.safety.engine import VllmSafetyEngine
from chatstack.safety.metrics import SafetyMetrics
from chatstack.safety.servicer import SafetyServicer
from chatstack.v1 import safety_pb2_grpc

SERVICE_NAME = SAFETY.proto_service


def build_spec(config: SafetyConfig, registry: CollectorRegistry | MetricFactory) -> ServiceSpec:
    """The safety service's spec: SERVING once the vLLM engine is up and warm."""
    engine = VllmSafetyEngine(config, SafetyMetrics(registry))
    return engine_service_spec(SERVICE_NAME, engine, SafetyServicer(engine),
                               safety_pb2_grpc.add_SafetyServiceServicer_to_server)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the safety service until SIGTERM (exits non-zero if the engine dies)."""
    config = SafetyConfig.load(sys.argv[1:] if argv is None else argv)
    return run_service(config, build_spec)


if __name__ == "__main__":
    sys.exit(main())
