"""Request bodies of the OpenAI-compatible HTTP API, and their translation to the chat flows'
domain objects (shapes and edge cases as vLLM's OpenAI server and OpenAI's own API reference)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chatstack.core.errors import InvalidRequest
from chatstack.gateway.model import ChatOptions
from chatstack.v1 import common_pb2

ROLES = {"system": common_pb2.ROLE_SYSTEM, "developer": common_pb2.ROLE_SYSTEM,
         "user": common_pb2.ROLE_USER, "assistant": common_pb2.ROLE_ASSISTANT}


class TextPart(BaseModel):
    """A text content part (the only kind served: no images or audio)."""

    type: Literal["text", "input_text", "output_text"]
    text: str


class Message(BaseModel):
    """One message of a conversation the caller sends."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text (parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    """`stream_options`."""

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`. `best_of` is chatstack's extension: generate that many
    candidates, rank them with the reward model, return the best `n` with their rewards."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0)
    n: int = Field(1, ge=1)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    best_of: int | None = Field(None, ge=1)
    user: str | None = None

    def messages_proto(self) -> list[common_pb2.ChatMessage]:
        """The conversation as the flows take it."""
        return [common_pb2.ChatMessage(role=ROLES[m.role], content=m.text())
                for m in self.messages]

    def options(self) -> ChatOptions:
        """The sampling options as the flows take them."""
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs: needs logprobs: true")
        if self.best_of is not None and self.best_of < self.n:
            raise InvalidRequest(f"best_of: {self.best_of} is less than n ({self.n})")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return ChatOptions(
            max_tokens=self.max_completion_tokens or self.max_tokens or 0, temperature=self.temperature,
            top_p=self.top_p, seed=self.seed, stop=stop, best_of=self.best_of or 1, n=self.n,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            logprobs=(self.top_logprobs or 0) if self.logprobs else None)
