"""RewardService servicer: proto <-> engine, nothing else."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import grpc

from chatstack.core.proto_convert import chat_messages_from_proto
from chatstack.reward.model import Ranked, RewardModelInfo, Score, ScoreItem
from chatstack.v1 import common_pb2, reward_pb2, reward_pb2_grpc


class RewardEngine(Protocol):
    """What the servicer needs (VllmRewardEngine implements it)."""

    async def score(self, items: Sequence[ScoreItem], what: str = "items",
                    truncate: bool = False) -> list[Score]: ...
    async def rank(self, conversation: tuple[tuple[str, str], ...],
                   candidates: Sequence[str], truncate: bool = False) -> list[Ranked]: ...
    def check_batch(self, n: int) -> None: ...
    def info(self) -> RewardModelInfo: ...


def _pairs(conversation: Iterable[common_pb2.ChatMessage]) -> tuple[tuple[str, str], ...]:
    """A conversation as the reward model's template takes it: (role, text) pairs."""
    return tuple((m.role, m.content) for m in chat_messages_from_proto(conversation))


def item_from_proto(item: reward_pb2.ScoreItem) -> ScoreItem:
    """ScoreItem message -> ScoreItem."""
    return ScoreItem(_pairs(item.conversation), item.response)


def _auto(truncation: int) -> bool:
    """Truncation enum -> cut long inputs from the left (AUTO) or refuse them."""
    return truncation == reward_pb2.TRUNCATION_AUTO


class RewardServicer(reward_pb2_grpc.RewardServiceServicer):
    """Serves RewardService from a RewardEngine."""

    def __init__(self, engine: RewardEngine) -> None:
        self.engine = engine

    async def Score(self, request: reward_pb2.ScoreRequest,
                    context: grpc.aio.ServicerContext) -> reward_pb2.ScoreResponse:
        """Score one response."""
        (result,) = await self.engine.score([item_from_proto(request.item)],
                                            truncate=_auto(request.truncation))
        return reward_pb2.ScoreResponse(score=result.score, input_tokens=result.input_tokens)

    async def ScoreBatch(self, request: reward_pb2.ScoreBatchRequest,
                         context: grpc.aio.ServicerContext) -> reward_pb2.ScoreBatchResponse:
        """Score many items in one engine batch."""
        self.engine.check_batch(len(request.items))
        results = await self.engine.score([item_from_proto(i) for i in request.items],
                                          truncate=_auto(request.truncation))
        return reward_pb2.ScoreBatchResponse(scores=[r.score for r in results],
                                             input_tokens=[r.input_tokens for r in results])

    async def Rank(self, request: reward_pb2.RankRequest,
                   context: grpc.aio.ServicerContext) -> reward_pb2.RankResponse:
        """Candidates best first."""
        ranked = await self.engine.rank(_pairs(request.conversation),
                                        list(request.candidates), _auto(request.truncation))
        return reward_pb2.RankResponse(ranked=[
            reward_pb2.RankedCandidate(index=r.index, score=r.score, text=r.text) for r in ranked])

    async def GetModelInfo(
        self, request: reward_pb2.RewardServiceGetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> reward_pb2.RewardServiceGetModelInfoResponse:
        """Describe the reward model."""
        info = self.engine.info()
        return reward_pb2.RewardServiceGetModelInfoResponse(
            model=info.model, max_model_len=info.max_model_len,
            max_batch_items=info.max_batch_items, max_candidates=info.max_candidates,
            model_version=info.version)
