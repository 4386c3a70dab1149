"""SafetyService servicer: proto <-> engine, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc

from chatstack.safety.model import CheckItem, Judgement, Policy, SafetyModelInfo
from chatstack.safety.wire import item_from_proto, policy_from_proto, verdicts
from chatstack.v1 import safety_pb2, safety_pb2_grpc


class SafetyEngine(Protocol):
    """What the servicer needs (VllmSafetyEngine implements it)."""

    async def check(self, items: Sequence[CheckItem], policy: Policy) -> list[Judgement]: ...
    def info(self) -> SafetyModelInfo: ...


class SafetyServicer(safety_pb2_grpc.SafetyServiceServicer):
    """Serves SafetyService from a SafetyEngine."""

    def __init__(self, engine: SafetyEngine) -> None:
        self.engine = engine

    async def Check(self, request: safety_pb2.CheckRequest,
                    context: grpc.aio.ServicerContext) -> safety_pb2.CheckResponse:
        """Judge items."""
        items = [item_from_proto(i) for i in request.items]
        return verdicts(await self.engine.check(items, policy_from_proto(request.policy)))

    async def GetModelInfo(
        self, request: safety_pb2.SafetyServiceGetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> safety_pb2.SafetyServiceGetModelInfoResponse:
        """Describe the guard model."""
        info = self.engine.info()
        return safety_pb2.SafetyServiceGetModelInfoResponse(
            model=info.model, max_model_len=info.max_model_len, max_items=info.max_items,
            categories=list(info.categories), model_version=info.version, thresholds=info.thresholds)
