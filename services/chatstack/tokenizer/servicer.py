"""TokenizerService servicer: proto <-> engine, nothing else."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from chatstack.core.offload import CpuOffload
from chatstack.core.proto_convert import chat_messages_from_proto, tools_from_proto
from chatstack.tokenizer.engine import EncodedText, TokenizerEngine, TokenizerInfo
from chatstack.v1 import tokenizer_pb2, tokenizer_pb2_grpc


def encode_response(encoded: list[EncodedText]) -> tokenizer_pb2.EncodeResponse:
    """EncodedTexts -> EncodeResponse, built in place (passing sub-messages to a constructor
    copies each one through serialize + parse, which dominated large batches)."""
    response = tokenizer_pb2.EncodeResponse()
    for item in encoded:
        message = response.encodings.add()
        message.ids.extend(item.ids)
        for start, end in item.offsets:
            offset = message.offsets.add()
            offset.start, offset.end = start, end
    return response


def info_to_proto(info: TokenizerInfo) -> tokenizer_pb2.GetInfoResponse:
    """TokenizerInfo -> GetInfoResponse."""
    return tokenizer_pb2.GetInfoResponse(
        model_name=info.model_name,
        vocab_size=info.vocab_size,
        max_length_tokens=info.max_length_tokens,
        special_tokens=[
            tokenizer_pb2.SpecialToken(kind=k, content=c, id=i) for k, c, i in info.special_tokens
        ],
        has_chat_template=info.has_chat_template,
    )


def _chars(texts: Iterable[str]) -> int:
    """Characters of input: what decides whether work runs inline or on the pool."""
    return sum(len(t) for t in texts)


class TokenizerServicer(tokenizer_pb2_grpc.TokenizerServiceServicer):
    """Serves TokenizerService from a TokenizerEngine."""

    def __init__(self, engine: TokenizerEngine, offload: CpuOffload | None = None) -> None:
        self.engine = engine
        # Large requests tokenize (and build their response) off the event loop.
        self.offload = offload or CpuOffload()

    async def Encode(
        self, request: tokenizer_pb2.EncodeRequest, context: grpc.aio.ServicerContext
    ) -> tokenizer_pb2.EncodeResponse:
        """Encode a batch of texts."""
        texts = list(request.texts)

        def run() -> tokenizer_pb2.EncodeResponse:
            return encode_response(self.engine.encode(texts, request.add_special_tokens,
                                                      request.return_offsets))

        return await self.offload.run(_chars(texts), run)

    async def Decode(
        self, request: tokenizer_pb2.DecodeRequest, context: grpc.aio.ServicerContext
    ) -> tokenizer_pb2.DecodeResponse:
        """Decode a batch of id sequences."""
        sequences = [list(s.ids) for s in request.sequences]
        texts = await self.offload.run(sum(map(len, sequences)), self.engine.decode, sequences,
                                       request.skip_special_tokens)
        return tokenizer_pb2.DecodeResponse(texts=texts)

    async def CountTokens(
        self, request: tokenizer_pb2.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> tokenizer_pb2.CountTokensResponse:
        """Count tokens per text."""
        texts = list(request.texts)
        counts = await self.offload.run(_chars(texts), self.engine.count, texts,
                                        request.add_special_tokens)
        return tokenizer_pb2.CountTokensResponse(counts=counts, total_tokens=sum(counts))

    async def ApplyChatTemplate(
        self, request: tokenizer_pb2.ApplyChatTemplateRequest, context: grpc.aio.ServicerContext
    ) -> tokenizer_pb2.ApplyChatTemplateResponse:
        """Render the conversation with the model's chat template."""
        messages = chat_messages_from_proto(request.messages)
        tools = tools_from_proto(request.tools)
        prompt, ids, counts = await self.offload.run(
            _chars(m.content for m in messages), self.engine.apply_chat_template, messages,
            request.add_generation_prompt, list(request.count_messages), tools)
        return tokenizer_pb2.ApplyChatTemplateResponse(prompt=prompt, token_ids=ids,
                                                       message_token_counts=counts)

    async def GetInfo(
        self, request: tokenizer_pb2.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> tokenizer_pb2.GetInfoResponse:
        """Describe the tokenizer."""
        return info_to_proto(self.engine.info())
