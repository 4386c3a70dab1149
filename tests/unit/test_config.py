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


def test_cli_args_start_a_service_with_the_same_settings() -> None:
    from chatstack.generation.config import GenerationConfig

    fields = ("model", "dtype", "max_model_len", "max_num_seqs", "cpu_kvcache_space_gib", "seed",
              "enforce_eager", "frontend_off_engine_cores", "stream_interval", "max_concurrent_rpcs")
    config = GenerationConfig(model="/m", dtype="float32", max_model_len=512, max_num_seqs=7,
                              cpu_kvcache_space_gib=0.5, seed=3, enforce_eager=False,
                              frontend_off_engine_cores=False, stream_interval=4)
    args = config.cli_args(*fields)
    assert "--no-enforce-eager" in args and "--max-concurrent-rpcs" not in args  # None is left out
    parsed = GenerationConfig.load(args)
    assert {f: getattr(parsed, f) for f in fields} == {f: getattr(config, f) for f in fields}
