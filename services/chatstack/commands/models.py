"""`chatstack models build-tiny DIR` and `chatstack models train-reward`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add(sub: Any) -> None:
    """Register `models build-tiny` and `models train-reward`."""
    models = sub.add_parser("models", help="model helpers").add_subparsers(dest="models_command",
                                                                           required=True)
    build = models.add_parser("build-tiny", help="build the deterministic tiny models")
    build.add_argument("dir", help="output directory (gets lm/ and reward/)")
    build.set_defaults(run=build_tiny)
    train = models.add_parser("train-reward", help="fine-tune a reward model on preference pairs (TRL)")
    train.add_argument("--data", required=True, help="JSONL of prompt/chosen/rejected pairs")
    train.add_argument("--model", required=True, help="reward model directory to start from")
    train.add_argument("--out", required=True, help="new model directory (must not exist or be empty)")
    train.add_argument("--steps", type=int, help="optimizer steps (default 20, for the tiny model)")
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--batch-size", type=int, help="pairs per batch")
    train.add_argument("--max-length", type=int, help="skip pairs longer than this many tokens")
    train.add_argument("--seed", type=int)
    train.add_argument("--eval-data", help="JSONL of held-out pairs: pairwise accuracy before and after")
    train.set_defaults(run=train_reward)


def build_tiny(args: argparse.Namespace) -> int:
    """Build the tiny models and print where they went."""
    from chatstack.models.tiny import build_tiny_models, fingerprint

    dirs = build_tiny_models(args.dir)
    print(json.dumps({k: str(v) for k, v in dirs.items()}, indent=2))
    print(f"fingerprint: {len(fingerprint(args.dir))} files hashed into {args.dir}/MANIFEST.json")
    return 0


def train_reward(args: argparse.Namespace) -> int:
    """Fine-tune a reward model on preference pairs; print the result."""
    from chatstack.models.train_reward import TrainRewardSettings, train_reward_command

    given = {"steps": args.steps, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
             "max_length": args.max_length, "seed": args.seed}
    settings = TrainRewardSettings(**{k: v for k, v in given.items() if v is not None})
    try:
        result = train_reward_command(Path(args.data), Path(args.model), Path(args.out), settings,
                                      Path(args.eval_data) if args.eval_data else None)
    except ValueError as exc:
        print(f"chatstack models train-reward: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0
