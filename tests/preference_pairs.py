"""Synthetic preference pairs for the reward-model tests: the chosen answer holds a marker word,
the rejected one a filler word in its place; the rest is random words of the tiny corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

MARKER = "moon"  # one token (" moon") of the tiny vocabulary; the filler never spells it
# Syllables of the tiny corpus without "mo" and "on", so no filler word contains the marker.
FILLER_SYLLABLES = ["ka", "to", "ri", "ne", "sa", "lu", "pe", "di", "go", "an", "er", "in", "ul",
                    "the", "ing", "ver", "ter", "est", "sh", "str", "gr"]


def _words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(FILLER_SYLLABLES) for _ in range(rng.randint(1, 2))) for _ in range(n)]


def make_pairs(n: int, seed: int) -> list[dict[str, Any]]:
    """Deterministic pairs in the training format, chatstack metadata included."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        answer = _words(rng, rng.randint(4, 8))
        at = rng.randint(1, len(answer))  # never first: " moon" is the token, "moon" is not
        chosen = [*answer[:at], MARKER, *answer[at:]]
        rejected = [*answer[:at], *_words(rng, 1), *answer[at:]]
        pairs.append({
            "prompt": [{"role": "system", "content": "answer briefly"},
                       {"role": "user", "content": " ".join(_words(rng, rng.randint(3, 6))) + "?"}],
            "chosen": [{"role": "assistant", "content": " ".join(chosen) + "."}],
            "rejected": [{"role": "assistant", "content": " ".join(rejected) + "."}],
            "margin": None if i % 2 else 0.5,
            "signal": "best_of",
            "event_id": f"1700000000000-{i}",
            "session_id": f"s{seed}-{i}",
            "turn_id": f"t{i}",
        })
    return pairs


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
