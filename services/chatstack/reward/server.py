"""Entry point of the standalone reward service: `python -m chatstack.reward`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from chatstack.catalog import REWARD
from chatstack.core.metrics import MetricFactory
from chatstack.core.server import ServiceSpec, engine_service_spec, run_service
from chatstack.reward.config import RewardConfig
from chatstack.reward.engine import VllmRewardEngine
from chatstack.reward.metrics import RewardMetrics
from chatstack.reward.servicer import RewardServicer
from chatstack.v1 import reward_pb2_grpc

SERVICE_NAME = REWARD.proto_service


def build_spec(config: RewardConfig, registry: CollectorRegistry | MetricFactory) -> ServiceSpec:
    """The reward service's spec: SERVING once the vLLM engine is up and warm."""
    engine = VllmRewardEngine(config, RewardMetrics(registry))
    return engine_service_spec(SERVICE_NAME, engine, RewardServicer(engine),
                               reward_pb2_grpc.add_RewardServiceServicer_to_server)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reward service until SIGTERM (exits non-zero if the engine dies)."""
    config = RewardConfig.load(sys.argv[1:] if argv is None else argv)
    return run_service(config, build_spec)


if __name__ == "__main__":
    sys.exit(main())
