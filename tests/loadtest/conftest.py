"""The load tests use the real stack from tests/stack_fixtures.py (registered in tests/conftest.py)."""
