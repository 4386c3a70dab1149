"""GatewayFlows: every transport-free flow of one gateway, built once and shared by both front
doors (the gRPC servicer and the OpenAI HTTP routes), which call them and nothing behind them."""

from __future__ import annotations

from dataclasses import dataclass

from chatstack.gateway.answering import Answerer
from chatstack.gateway.clients import Backends
from chatstack.gateway.completions import Completions
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.conversations import Conversations
from chatstack.gateway.dataplane import ChatDataPlane
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.plan import Planner
from chatstack.gateway.preferences import PreferenceRecorder
from chatstack.gateway.responses import Responses
from chatstack.gateway.safety_stage import SafetyStage


@dataclass(frozen=True)
class GatewayFlows:
    """The flows a front door calls: plans, chats, session operations, preferences, stateless
    completions, stored responses, moderation, and the served model's facts."""

    planner: Planner
    dataplane: ChatDataPlane
    conversations: Conversations
    preferences: PreferenceRecorder
    completions: Completions
    responses: Responses
    safety: SafetyStage
    backends: Backends

    @classmethod
    def build(cls, config: GatewayConfig, backends: Backends, metrics: GatewayMetrics) -> GatewayFlows:
        """The flows over one set of backend clients; one answer stage serves them all."""
        safety = SafetyStage(backends.safety, config, metrics)
        answerer = Answerer(backends.generation, backends.reward, metrics, safety)
        conversations = Conversations(backends, config)
        preferences = PreferenceRecorder(config, backends, metrics)
        dataplane = ChatDataPlane(config, backends, metrics, answerer, conversations, preferences)
        return cls(Planner(config), dataplane, conversations, preferences,
                   Completions(config, backends.tokenizer, backends.generation, answerer, metrics),
                   Responses(dataplane, conversations, preferences), safety, backends)

    async def model_name(self) -> str:
        """The served model's name."""
        return (await self.backends.generation.info()).name

    async def close(self, grace_seconds: float) -> None:
        """Finish (or, after the grace period, cancel) pending scorings and preference writes;
        close the channels."""
        await self.dataplane.close(grace_seconds)
        await self.preferences.close(grace_seconds)
        await self.backends.close()
