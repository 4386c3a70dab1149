"""Shared fixtures: the tiny models and the helpers that start real servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatstack.models.tiny import build_tiny_models

# The real-server fixtures, registered once for every directory (tests/stack_fixtures.py).
pytest_plugins = ["tests.stack_fixtures"]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny models: `CHATSTACK_TEST_MODELS_DIR` (make test builds it) or built here."""
    given = os.environ.get("CHATSTACK_TEST_MODELS_DIR")
    if given and (Path(given) / "MANIFEST.json").is_file():
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("models")
    build_tiny_models(out)
    return out


@pytest.fixture(scope="session")
def lm_dir(models_dir: Path) -> Path:
    """Directory of the tiny causal LM (and its tokenizer)."""
    return models_dir / "lm"


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where server processes started by fixtures write their logs."""
    yield tmp_path_factory.mktemp("logs")
