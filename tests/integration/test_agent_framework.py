"""A widely used agent framework against the gateway's OpenAI API: Pydantic AI (installed for
tests only) asks for typed output with a forced output tool (its default), with the native
`response_format` json_schema, and runs a function tool the model calls, continuing the
conversation with its result; the tiny random model, constrained, satisfies the types every time."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent, NativeOutput, RunContext, ToolOutput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition

from tests.integration.conftest import ALICE_KEY
from tests.stack_fixtures import GatewayProcess

pytestmark = pytest.mark.integration


class City(BaseModel):
    """The agent's answer (bounded fields: a random model fills free strings to max_tokens)."""

    name: Literal["Oslo", "Lima", "Pune"]
    rainy: bool
    days: int = Field(ge=1, le=7)


@pytest.fixture(scope="module")
def model(gateway_process: GatewayProcess, served_model: str) -> OpenAIChatModel:
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{gateway_process.http_port}/v1", api_key=ALICE_KEY)
    return OpenAIChatModel(served_model, provider=provider)


SETTINGS = ModelSettings(max_tokens=96, temperature=1.0)


def test_output_tool_and_native_output_return_the_typed_object(model: OpenAIChatModel) -> None:
    for output in (ToolOutput(City), NativeOutput(City)):
        agent = Agent(model, output_type=output, model_settings=SETTINGS, retries=0)
        for seed in range(2):
            result = agent.run_sync("Which city is rainy?", model_settings=ModelSettings(seed=seed))
            assert isinstance(result.output, City)


def test_the_agent_calls_a_function_tool_and_continues_with_its_result(model: OpenAIChatModel) -> None:
    calls: list[str] = []
    agent = Agent(model, output_type=City, model_settings=SETTINGS, retries=0)

    async def until_called(ctx: RunContext[None], tool: ToolDefinition) -> ToolDefinition | None:
        return None if calls else tool  # offered until called once: then the answer must follow

    @agent.tool(prepare=until_called)
    def forecast(ctx: RunContext[None], city: Literal["Oslo", "Lima", "Pune"]) -> str:
        """The forecast of a city."""
        calls.append(city)
        return f"{city}: rain all week"

    for seed in range(6):  # the random model picks among the tools: some runs call forecast first
        result = agent.run_sync("Forecast for Oslo, then answer.",
                                model_settings=ModelSettings(seed=seed, parallel_tool_calls=False))
        assert isinstance(result.output, City)
        returns = [part.tool_name for message in result.all_messages() for part in message.parts
                   if part.part_kind == "tool-return"]
        if "forecast" in returns:
            break
    assert calls and "forecast" in returns, "over 6 seeds the model never called the function tool"
