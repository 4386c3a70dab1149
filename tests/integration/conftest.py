"""Helpers of the integration tests (the fixtures themselves live in tests/stack_fixtures.py)."""

from tests.stack_fixtures import (  # noqa: F401
    ALICE_KEY,
    BOB_KEY,
    CHAT_SERVICE,
    GENERATION_SERVICE,
    REWARD_SERVICE,
    SESSION_SERVICE,
    TOKENIZER_SERVICE,
    start_gateway,
    start_generation_service,
    start_session_service,
)
