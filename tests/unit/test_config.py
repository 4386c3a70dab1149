"""Config objects: env vars and CLI flags map onto the same fields."""

import pytest

from chatstack.tokenizer.config import TokenizerConfig


def test_env_var_sets_a_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATSTACK_TOKENIZER_MAX_BATCH_ITEMS", "7")
    assert TokenizerConfig.load([]).max_batch_items == 7


def test_cli_flag_overrides_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATSTACK_TOKENIZER_PORT", "1111")
    config = TokenizerConfig.load(["--port", "2222", "--model-dir", "/m"])
    assert (config.port, config.model_dir) == (2222, "/m")


def test_invalid_value_is_rejected() -> None:
    with pytest.raises(SystemExit):
        TokenizerConfig.load(["--port", "-5"])


def test_service_name_comes_from_env_prefix() -> None:
    assert TokenizerConfig.service_name() == "tokenizer"
