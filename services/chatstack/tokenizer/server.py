"""Entry point of the standalone tokenizer service: `python -m chatstack.tokenizer`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from chatstack.catalog import TOKENIZER
from chatstack.core.metrics import MetricFactory
from chatstack.core.server import ServiceSpec, run_service, servicer_spec
from chatstack.tokenizer.config import TokenizerConfig
from chatstack.tokenizer.engine import TokenizerEngine, TokenizerLimits
from chatstack.tokenizer.servicer import TokenizerServicer
from chatstack.v1 import tokenizer_pb2_grpc

SERVICE_NAME = TOKENIZER.proto_service


def build_spec(config: TokenizerConfig, registry: CollectorRegistry | MetricFactory) -> ServiceSpec:
    """The tokenizer service's spec. Loading a tokenizer takes milliseconds, so it happens here:
    a missing or broken tokenizer stops the process at once with a clear error."""
    limits = TokenizerLimits(
        max_batch_items=config.max_batch_items,
        max_text_chars=config.max_text_chars,
        max_sequence_tokens=config.max_sequence_tokens,
        max_messages=config.max_messages,
        max_request_chars=config.max_request_chars,
        max_request_tokens=config.max_request_tokens,
        max_response_bytes=config.max_message_bytes,
    )
    servicer = TokenizerServicer(TokenizerEngine.from_dir(config.model_dir, config.model_name, limits))
    return servicer_spec(SERVICE_NAME, servicer, tokenizer_pb2_grpc.add_TokenizerServiceServicer_to_server)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tokenizer service until SIGTERM."""
    config = TokenizerConfig.load(sys.argv[1:] if argv is None else argv)
    return run_service(config, build_spec)


if __name__ == "__main__":
    sys.exit(main())
