"""The tiny models build deterministically and have the shapes vLLM needs."""

import json
from pathlib import Path

from chatstack.models.tiny import TinyModelSpec, build_tiny_models, fingerprint
from chatstack.safety.guard_data import LABELS


def test_build_is_deterministic(tmp_path: Path, models_dir: Path) -> None:
    build_tiny_models(tmp_path / "again")
    assert fingerprint(tmp_path / "again") == fingerprint(models_dir)


def test_lm_has_head_dim_64_and_reward_one_label(models_dir: Path) -> None:
    lm = json.loads((models_dir / "lm" / "config.json").read_text())
    rm = json.loads((models_dir / "reward" / "config.json").read_text())
    assert lm["architectures"] == ["LlamaForCausalLM"]
    assert lm["hidden_size"] // lm["num_attention_heads"] == 64
    assert rm["architectures"] == ["LlamaForSequenceClassification"]
    assert len(rm["id2label"]) == 1
    assert lm["vocab_size"] == TinyModelSpec().vocab_size


def test_guard_is_a_classifier_over_the_safety_labels(models_dir: Path) -> None:
    guard = json.loads((models_dir / "guard" / "config.json").read_text())
    assert guard["architectures"] == ["LlamaForSequenceClassification"]
    assert [guard["id2label"][str(i)] for i in range(len(LABELS))] == list(LABELS)
    assert guard["hidden_size"] // guard["num_attention_heads"] == 64
