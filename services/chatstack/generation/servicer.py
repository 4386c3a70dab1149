"""GenerationService servicer: proto <-> engine, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import grpc

from chatstack.core.proto_convert import constraint_from_proto
from chatstack.generation.model import (
    Delta,
    GenerationResult,
    ModelInfo,
    PositionLogprobs,
    PromptInput,
    SamplingOptions,
)
from chatstack.v1 import common_pb2, generation_pb2, generation_pb2_grpc

FINISH_REASONS = {
    "stop": common_pb2.FINISH_REASON_STOP,
    "length": common_pb2.FINISH_REASON_LENGTH,
    "abort": common_pb2.FINISH_REASON_ABORT,
}


class GenerationEngine(Protocol):
    """What the servicer needs (VllmGenerationEngine implements it)."""

    def stream(self, prompt: PromptInput,
               options: SamplingOptions) -> AsyncIterator[Delta | GenerationResult]: ...
    def info(self) -> ModelInfo: ...


def sampling_options_from_proto(p: generation_pb2.SamplingParams) -> SamplingOptions:
    """SamplingParams message -> SamplingOptions (unset optional fields stay None)."""
    def opt(name: str):  # type: ignore[no-untyped-def]
        return getattr(p, name) if p.HasField(name) else None

    return SamplingOptions(
        n=p.n or 1, temperature=opt("temperature"), top_p=opt("top_p"), top_k=opt("top_k"),
        min_p=opt("min_p"), max_tokens=p.max_tokens, stop=tuple(p.stop),
        stop_token_ids=tuple(p.stop_token_ids), seed=opt("seed"),
        presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
        repetition_penalty=opt("repetition_penalty"), logprobs=opt("logprobs"),
        ignore_eos=p.ignore_eos, min_tokens=p.min_tokens,
        constraint=constraint_from_proto(p.constraint, "sampling.constraint")
        if p.HasField("constraint") else None,
    )



def prompt_from_proto(
    request: generation_pb2.GenerateRequest | generation_pb2.GenerateStreamRequest,
) -> PromptInput:
    """The prompt oneof -> PromptInput."""
    kind = request.WhichOneof("prompt")
    if kind == "token_ids":
        return PromptInput(token_ids=tuple(request.token_ids.ids))
    return PromptInput(text=request.text if kind == "text" else None)


def _logprobs_to_proto(items: list[PositionLogprobs]) -> list[generation_pb2.PositionLogprobs]:
    def one(t):  # type: ignore[no-untyped-def]
        return generation_pb2.TokenLogprob(token_id=t.token_id, logprob=t.logprob, token=t.token)

    return [generation_pb2.PositionLogprobs(sampled=one(i.sampled), top=[one(t) for t in i.top])
            for i in items]


def delta_to_proto(delta: Delta) -> generation_pb2.GenerateStreamResponse:
    """Delta -> stream message."""
    message = generation_pb2.GenerateStreamResponse()
    d = message.delta
    d.index, d.text = delta.index, delta.text
    d.token_ids.extend(delta.token_ids)
    if delta.logprobs:
        d.logprobs.extend(_logprobs_to_proto(delta.logprobs))
    return message


def result_to_proto(result: GenerationResult) -> generation_pb2.GenerateResponse:
    """GenerationResult -> GenerateResponse."""
    response = generation_pb2.GenerateResponse(model=result.model)
    for c in result.choices:
        choice = response.choices.add()
        choice.index, choice.text = c.index, c.text
        choice.token_ids.extend(c.token_ids)
        choice.finish_reason = FINISH_REASONS.get(c.finish_reason, common_pb2.FINISH_REASON_UNSPECIFIED)
        choice.stop_reason = c.stop_reason
        if c.logprobs:
            choice.logprobs.extend(_logprobs_to_proto(c.logprobs))
    response.usage.prompt_tokens = result.prompt_tokens
    response.usage.completion_tokens = result.completion_tokens
    response.usage.total_tokens = result.prompt_tokens + result.completion_tokens
    t = result.timings
    response.timings.queue_seconds = t.queue_seconds
    response.timings.ttft_seconds = t.ttft_seconds
    response.timings.mean_itl_seconds = t.mean_itl_seconds
    response.timings.e2e_seconds = t.e2e_seconds
    return response


class GenerationServicer(generation_pb2_grpc.GenerationServiceServicer):
    """Serves GenerationService from a GenerationEngine."""

    def __init__(self, engine: GenerationEngine) -> None:
        self.engine = engine

    async def Generate(self, request: generation_pb2.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> generation_pb2.GenerateResponse:
        """Generate all choices; one response."""
        final: GenerationResult | None = None
        async for item in self.engine.stream(prompt_from_proto(request),
                                             sampling_options_from_proto(request.sampling)):
            if isinstance(item, GenerationResult):
                final = item
        assert final is not None
        return result_to_proto(final)

    async def GenerateStream(
        self, request: generation_pb2.GenerateStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerateStreamResponse]:
        """Stream deltas, then the final message."""
        async for item in self.engine.stream(prompt_from_proto(request),
                                             sampling_options_from_proto(request.sampling)):
            if isinstance(item, GenerationResult):
                yield generation_pb2.GenerateStreamResponse(final=result_to_proto(item))
            else:
                yield delta_to_proto(item)

    async def GetModelInfo(self, request: generation_pb2.GetModelInfoRequest,
                           context: grpc.aio.ServicerContext) -> generation_pb2.GetModelInfoResponse:
        """Describe the model."""
        info = self.engine.info()
        return generation_pb2.GetModelInfoResponse(
            model=info.model, max_model_len=info.max_model_len, vocab_size=info.vocab_size,
            max_n=info.max_n, default_max_tokens=info.default_max_tokens, model_version=info.version)
