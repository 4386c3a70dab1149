"""The RLHF loop in miniature, over the real parts: preference events in the session store ->
`chatstack preferences export` -> TRL's own dataset loading and format checks -> `chatstack models
train-reward` (TRL's RewardTrainer) -> the reward service, pointed at the new model, prefers
what the events preferred.

The events are best-of-n events recorded through the session service's RecordPreference with
controlled texts (the chosen candidate holds a marker word): the random tiny generator cannot be
made to write them, and the capture itself is tested in test_preferences.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from chatstack.v1 import (
    common_pb2,
    preference_pb2,
    reward_pb2,
    reward_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
)
from tests.preference_pairs import make_pairs
from tests.stack_fixtures import start_reward_service

pytestmark = pytest.mark.integration
OWNER = "trainer"
ROLES = {"system": common_pb2.ROLE_SYSTEM, "user": common_pb2.ROLE_USER, "assistant": common_pb2.ROLE_ASSISTANT}


def _messages(messages: list[dict[str, str]]) -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role=ROLES[m["role"]], content=m["content"]) for m in messages]  # type: ignore[arg-type]


def record_best_of(stub: session_pb2_grpc.SessionServiceStub, pair: dict[str, Any], i: int) -> None:
    """A best-of-2 event whose kept (higher-reward) candidate is the pair's chosen answer."""
    md = (("x-chatstack-owner", OWNER),)
    sid = stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=md, timeout=10).session.session_id
    chosen = preference_pb2.PreferenceCandidate(text=pair["chosen"][0]["content"], reward=1.0, kept=True,
                                                turn_id=f"t{i}")
    rejected = preference_pb2.PreferenceCandidate(text=pair["rejected"][0]["content"], reward=0.25)
    stub.RecordPreference(session_pb2.RecordPreferenceRequest(event=preference_pb2.PreferenceEvent(
        kind=preference_pb2.PREFERENCE_KIND_BEST_OF, session_id=sid, turn_id=f"t{i}", user_turn_id=f"u{i}",
        prompt=_messages(pair["prompt"]), candidates=[rejected, chosen] if i % 2 else [chosen, rejected],
        sampling={"best_of": "2"})), metadata=md, timeout=10)


def export_cli(session_address: str, out: Path, *flags: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "chatstack.cli", "preferences", "export", "--session-address",
                           session_address, "--out", str(out), *flags], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def service_accuracy(address: str, pairs: list[dict[str, Any]]) -> float:
    """How often the reward service scores the chosen answer above the rejected one."""
    with grpc.insecure_channel(address) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        items = [reward_pb2.ScoreItem(conversation=_messages(p["prompt"]), response=p[side][0]["content"])
                 for p in pairs for side in ("chosen", "rejected")]
        scores = list(stub.ScoreBatch(reward_pb2.ScoreBatchRequest(items=items), timeout=120).scores)
    return sum(scores[2 * i] > scores[2 * i + 1] for i in range(len(pairs))) / len(pairs)


def test_export_trains_a_reward_model_that_the_reward_service_serves(
        session_service: tuple[str, int], models_dir: Path, log_dir: Path, tmp_path: Path) -> None:
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    from chatstack.models.train_reward import TrainRewardSettings, pairwise_accuracy, train_reward

    train_pairs, held_out = make_pairs(64, seed=11), make_pairs(32, seed=12)
    with grpc.insecure_channel(session_service[0]) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        for i, pair in enumerate(train_pairs):
            record_best_of(stub, pair, i)

    # The export, by the CLI, of this owner's best-of events with a margin of at least 0.5.
    out = tmp_path / "pairs.jsonl"
    report = export_cli(session_service[0], out, "--owner", OWNER, "--kinds", "best_of", "--min-margin", "0.5")
    assert (report["events"], report["rows"], report["by_signal"]) == (64, 64, {"best_of": 64})
    assert export_cli(session_service[0], tmp_path / "none.jsonl", "--owner", OWNER,
                      "--min-margin", "0.8")["rows"] == 0  # margins are 0.75

    # TRL reads it as it is: HF datasets' JSON loader, TRL's conversational preference checks.
    dataset = load_dataset("json", data_files=str(out), split="train")
    assert len(dataset) == 64 and {"prompt", "chosen", "rejected"} <= set(dataset.column_names)
    tokenizer = AutoTokenizer.from_pretrained(models_dir / "reward")
    for row in dataset.select(range(4)):
        assert is_conversational(row)
        rendered = maybe_apply_chat_template(row, tokenizer)
        assert set(rendered) >= {"prompt", "chosen", "rejected"} and "moon" in rendered["chosen"]
    assert [json.loads(line)["chosen"] for line in out.read_text().splitlines()] == [
        p["chosen"] for p in train_pairs]

    # Train on the export; accuracy on held-out pairs before and after.
    before = pairwise_accuracy(models_dir / "reward", held_out)
    trained = tmp_path / "reward-trained"
    train_reward(out, models_dir / "reward", trained, TrainRewardSettings())
    after = pairwise_accuracy(trained, held_out)
    print(f"\nheld-out pairwise accuracy of the reward model: before {before:.3f}, after {after:.3f}")
    assert after >= 0.9 and after > before + 0.25

    # The reward service, pointed at the new model directory, prefers the same answers.
    proc, address, _ = start_reward_service(trained, log_dir, name="reward-trained")
    try:
        served = service_accuracy(address, held_out)
    finally:
        proc.stop(60)
    print(f"held-out pairwise accuracy of the reward service on the trained model: {served:.3f}")
    assert served >= 0.9
