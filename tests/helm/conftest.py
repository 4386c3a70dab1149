"""Fixtures of the chart tests: the real services whose /metrics the dashboard and alerts must match.

The session, generation and gateway services (and the Redis and backends behind them) come from
tests/stack_fixtures.py (registered in tests/conftest.py), so a run of the whole suite starts
each of them once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chatstack.catalog import TOKENIZER
from chatstack.core.process import free_port, start_grpc_service

TOKENIZER_SERVICE = TOKENIZER.proto_service


@pytest.fixture(scope="session")
def helm_tokenizer_service(models_dir: Path, log_dir: Path) -> Iterator[tuple[str, int]]:
    """A tokenizer service on the tiny LM's tokenizer; yields (address, metrics port)."""
    port, metrics_port = free_port(), free_port()
    proc = start_grpc_service("tokenizer-helm", "tokenizer", port, metrics_port, log_dir,
                              ("--model-dir", str(models_dir / "lm")), health_service=TOKENIZER_SERVICE)
    yield f"127.0.0.1:{port}", metrics_port
    assert proc.stop() == 0, proc.tail()
