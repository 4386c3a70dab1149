"""Entry point of the standalone reward service: `python -m chatstack.reward`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import grpc
from prometheus_client import CollectorRegistry

from chatstack.core.server import ServiceSpec, run_service
from chatstack.reward.config import RewardConfig
from chatstack.reward.engine import VllmRewardEngine
from chatstack.reward.metrics import RewardMetrics
from chatstack.reward.servicer import RewardServicer
from chatstack.v1 import reward_pb2, reward_pb2_grpc

SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name


def build_spec(config: RewardConfig, registry: CollectorRegistry) -> ServiceSpec:
    """The reward service's spec: SERVING once the pooling engine is up and warm."""
    engine = VllmRewardEngine(config, RewardMetrics(registry))

    def register(server: grpc.aio.Server) -> None:
        reward_pb2_grpc.add_RewardServiceServicer_to_server(RewardServicer(engine), server)

    spec = ServiceSpec(service_names=[SERVICE_NAME], register=register, start=engine.start,
                       stop=engine.close)
    engine.on_fatal = lambda reason: spec.on_fatal(reason)
    return spec


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reward service until SIGTERM (exits non-zero if the engine dies)."""
    config = RewardConfig.load(sys.argv[1:] if argv is None else argv)
    return run_service(config, "reward", lambda registry: build_spec(config, registry))


if __name__ == "__main__":
    sys.exit(main())
