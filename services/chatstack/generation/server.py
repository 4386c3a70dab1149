"""Entry point of the standalone generation service: `python -m chatstack.generation`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from chatstack.catalog import GENERATION
from chatstack.core.metrics import MetricFactory
from chatstack.core.server import ServiceSpec, engine_service_spec, run_service
from chatstack.generation.config import GenerationConfig
from chatstack.generation.engine import VllmGenerationEngine
from chatstack.generation.metrics import GenerationMetrics
from chatstack.generation.servicer import GenerationServicer
from chatstack.v1 import generation_pb2_grpc

SERVICE_NAME = GENERATION.proto_service


def build_spec(config: GenerationConfig, registry: CollectorRegistry | MetricFactory) -> ServiceSpec:
    """The generation service's spec: SERVING once the vLLM engine is up and warm."""
    engine = VllmGenerationEngine(config, GenerationMetrics(registry))
    return engine_service_spec(SERVICE_NAME, engine, GenerationServicer(engine),
                               generation_pb2_grpc.add_GenerationServiceServicer_to_server)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generation service until SIGTERM (exits non-zero if the engine dies)."""
    config = GenerationConfig.load(sys.argv[1:] if argv is None else argv)
    return run_service(config, build_spec)


if __name__ == "__main__":
    sys.exit(main())
