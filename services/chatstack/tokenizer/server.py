"""Entry point of the standalone tokenizer service: `python -m chatstack.tokenizer`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import grpc
from prometheus_client import CollectorRegistry

from chatstack.core.server import ServiceSpec, run_service
from chatstack.tokenizer.config import TokenizerConfig
from chatstack.tokenizer.engine import TokenizerEngine, TokenizerLimits
from chatstack.tokenizer.servicer import TokenizerServicer
from chatstack.v1 import tokenizer_pb2, tokenizer_pb2_grpc

SERVICE_NAME = tokenizer_pb2.DESCRIPTOR.services_by_name["TokenizerService"].full_name


def build_spec(config: TokenizerConfig, registry: CollectorRegistry) -> ServiceSpec:
    """The tokenizer service's spec: loads the tokenizer when the runtime starts it."""
    servicer: TokenizerServicer | None = None
    limits = TokenizerLimits(
        max_batch_items=config.max_batch_items,
        max_text_chars=config.max_text_chars,
        max_sequence_tokens=config.max_sequence_tokens,
        max_messages=config.max_messages,
    )
    holder: dict[str, TokenizerServicer] = {}

    def register(server: grpc.aio.Server) -> None:
        # Registered before the load so health answers NOT_SERVING meanwhile; calls that
        # arrive early get UNAVAILABLE from the lazy proxy below.
        tokenizer_pb2_grpc.add_TokenizerServiceServicer_to_server(_Lazy(holder), server)

    async def start() -> None:
        nonlocal servicer
        engine = await asyncio.to_thread(
            TokenizerEngine.from_dir, config.model_dir, config.model_name, limits
        )
        servicer = TokenizerServicer(engine)
        holder["servicer"] = servicer

    return ServiceSpec(service_names=[SERVICE_NAME], register=register, start=start)


class _Lazy:
    """Forwards RPCs to the servicer once it exists; UNAVAILABLE before."""

    def __init__(self, holder: dict[str, TokenizerServicer]) -> None:
        self._holder = holder

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        async def call(request, context):  # type: ignore[no-untyped-def]
            servicer = self._holder.get("servicer")
            if servicer is None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "tokenizer is still loading")
            return await getattr(servicer, name)(request, context)

        return call


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tokenizer service until SIGTERM."""
    config = TokenizerConfig.load(sys.argv[1:] if argv is None else argv)
    return run_service(config, "tokenizer", lambda registry: build_spec(config, registry))


if __name__ == "__main__":
    sys.exit(main())
