"""`chatstack models train-reward`: TRL's RewardTrainer on the tiny reward model learns a preference.

Synthetic pairs: the chosen answer holds a marker word, the rejected one has a filler word in its
place; everything else is random words of the tiny corpus' syllables. The random-init model
ranks them at about chance; after a few seconds of training it ranks held-out pairs correctly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatstack.models.train_reward import (
    TrainRewardSettings,
    pair_ids,
    pairwise_accuracy,
    train_reward,
)
from tests.preference_pairs import MARKER, make_pairs, write_jsonl

pytestmark = pytest.mark.integration

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SETTINGS = TrainRewardSettings()  # the defaults: 20 steps at lr 1e-4, seed 0


@pytest.fixture(scope="module")
def reward_dir(models_dir: Path) -> Path:
    """The tiny reward model (random init)."""
    return models_dir / "reward"


@pytest.fixture(scope="module")
def trained(reward_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train once for the module; accuracy on held-out pairs before and after."""
    tmp = tmp_path_factory.mktemp("train_reward")
    train = write_jsonl(tmp / "train.jsonl", make_pairs(64, seed=1))
    held_out = make_pairs(32, seed=2)
    before = pairwise_accuracy(reward_dir, held_out)
    report = train_reward(train, reward_dir, tmp / "out", SETTINGS)
    after = pairwise_accuracy(Path(report.out_dir), write_jsonl(tmp / "held_out.jsonl", held_out))
    return {"report": report, "before": before, "after": after, "tmp": tmp}


def test_synthetic_pairs_hold_the_marker_in_chosen_only(reward_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(reward_dir))
    marker_id = tokenizer.convert_tokens_to_ids("Ġ" + MARKER)
    for pair in make_pairs(96, seed=1):
        chosen, rejected = pair_ids(tokenizer, pair)
        assert marker_id in chosen and marker_id not in rejected


def test_rendering_matches_trl(reward_dir: Path) -> None:
    from transformers import AutoTokenizer
    from trl.data_utils import _tokenize

    tokenizer = AutoTokenizer.from_pretrained(str(reward_dir))
    pair = make_pairs(1, seed=3)[0]
    chosen, rejected = pair_ids(tokenizer, pair)
    assert chosen == _tokenize(tokenizer, pair["prompt"] + pair["chosen"], tools=None)["input_ids"]
    assert rejected == _tokenize(tokenizer, pair["prompt"] + pair["rejected"], tools=None)["input_ids"]


def test_training_raises_held_out_pairwise_accuracy(
        trained: dict[str, Any], record_property: Callable[[str, object], None]) -> None:
    report, before, after = trained["report"], trained["before"], trained["after"]
    print(f"\nheld-out pairwise accuracy: before {before:.3f}, after {after:.3f}; "
          f"{report.steps} steps in {report.seconds:.1f}s, final loss {report.final_loss:.3g}")
    record_property("pairwise_accuracy_before", before)
    record_property("pairwise_accuracy_after", after)
    assert report.steps == SETTINGS.steps
    assert report.pairs == 64 and report.too_long == 0
    assert 0.25 <= before <= 0.75
    assert after >= 0.9
    assert after > before + 0.25


def test_out_dir_is_a_complete_reward_model_dir(trained: dict[str, Any], reward_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    out = Path(trained["report"].out_dir)
    assert (out / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert len(config["id2label"]) == 1  # num_labels, as transformers stores it
    assert config["pad_token_id"] == 0
    for name in TOKENIZER_FILES:
        assert (out / name).read_bytes() == (reward_dir / name).read_bytes(), name
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert model.config.architectures == ["LlamaForSequenceClassification"]
    assert model.config.num_labels == 1
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".out.")]
    assert leftovers == []  # the staging directory is gone


def test_a_pair_without_rejected_is_refused_naming_the_field(reward_dir: Path, tmp_path: Path) -> None:
    rows = make_pairs(4, seed=4)
    del rows[2]["rejected"]
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=r"row 3: field 'rejected'"):
        train_reward(data, reward_dir, tmp_path / "out", SETTINGS)
    for row in rows:
        row.pop("rejected", None)
    with pytest.raises(ValueError, match=r"missing field 'rejected'"):
        train_reward(write_jsonl(tmp_path / "worse.jsonl", rows), reward_dir, tmp_path / "out2", SETTINGS)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_an_empty_file_is_refused(reward_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no preference pairs"):
        train_reward(tmp_path / "empty.jsonl", reward_dir, tmp_path / "out", SETTINGS)


def test_a_non_empty_out_dir_is_refused(reward_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("not mine")
    data = write_jsonl(tmp_path / "train.jsonl", make_pairs(4, seed=5))
    with pytest.raises(ValueError, match="not an empty directory"):
        train_reward(data, reward_dir, out, SETTINGS)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_no_pair_within_max_length_is_refused(reward_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", make_pairs(4, seed=6))
    with pytest.raises(ValueError, match="no pair fits max_length 8 tokens"):
        train_reward(data, reward_dir, tmp_path / "out", TrainRewardSettings(max_length=8))
    assert not (tmp_path / "out").exists()
