"""The `chatstack` command: `models build-tiny DIR`, `models train-reward`, `preferences export`,
`serve SERVICE ...`, `chat`, `keys`, `run-local`, `run-ray`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from chatstack.catalog import DEV_STACK_GROUP_NICE, SESSION


def _serve_entrypoints() -> dict[str, Callable[[Sequence[str]], int]]:
    from chatstack.gateway.server import main as gateway_main
    from chatstack.generation.server import main as generation_main
    from chatstack.reward.server import main as reward_main
    from chatstack.session.server import main as session_main
    from chatstack.tokenizer.server import main as tokenizer_main

    return {"gateway": gateway_main, "tokenizer": tokenizer_main, "generation": generation_main,
            "reward": reward_main, "session": session_main}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["chat"]:  # the REPL parses its own flags
        from chatstack.chat_cli import main as chat_main

        return chat_main(args_in[1:])
    if args_in[:1] == ["serve"]:  # service flags are parsed by the service's own config
        services = _serve_entrypoints()
        if len(args_in) < 2 or args_in[1] not in services:
            print(f"usage: chatstack serve {{{','.join(services)}}} [flags]", file=sys.stderr)
            return 2
        return services[args_in[1]](args_in[2:])

    parser = argparse.ArgumentParser(prog="chatstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="model helpers").add_subparsers(
        dest="models_command", required=True
    )
    build = models.add_parser("build-tiny", help="build the deterministic tiny models")
    build.add_argument("dir", help="output directory (gets lm/ and reward/)")
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
    prefs = sub.add_parser("preferences", help="RLHF data").add_subparsers(
        dest="prefs_command", required=True)
    exp = prefs.add_parser("export", help="stored preference events as JSONL training data (README: RLHF)")
    exp.add_argument("--session-address", default=SESSION.local_address, help="the session service")
    exp.add_argument("--out", required=True, help="JSONL file to write")
    exp.add_argument("--format", choices=("pairs", "ranked", "unpaired"), default="pairs",
                     help="pairs: TRL preference (prompt/chosen/rejected); ranked: best-of candidates; "
                          "unpaired: TRL unpaired (prompt/completion/label)")
    exp.add_argument("--since", default="", help="ISO-8601 time or a duration back from now (24h, 7d)")
    exp.add_argument("--owner", default="", help="only this owner's events")
    exp.add_argument("--kinds", default="", help="comma-separated: feedback,best_of,regenerate,edit,undo")
    exp.add_argument("--min-margin", type=float, default=0.0,
                     help="drop reward-model pairs whose reward margin is below this")
    exp.add_argument("--operator", default="operator",
                     help="who exports (the identity the session service logs with the export)")
    exp.add_argument("--application", default="",
                     help="Ray Serve application (session) when --session-address is Serve's gRPC proxy")
    sub.add_parser("serve", help="run one service: chatstack serve tokenizer --port ...")
    sub.add_parser("chat", help="interactive chat with the gateway (chatstack chat --help)")
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    new_key = keys.add_parser("new", help="make a key for OWNER; prints the key and its keys-file line")
    new_key.add_argument("owner")
    hash_cmd = keys.add_parser("hash", help="the keys-file hash of KEY")
    hash_cmd.add_argument("key")
    local = sub.add_parser("run-local", help="start every service on localhost (make run)")
    local.add_argument("--models-dir", default=".models/tiny")
    local.add_argument("--run-dir", default=".run")
    ray_local = sub.add_parser("run-ray", help="start the stack on a local Ray Serve (make run-ray)")
    ray_local.add_argument("--config", default="deploy/ray/serve-config.yaml")
    ray_local.add_argument("--models-dir", default=".models/tiny")
    ray_local.add_argument("--run-dir", default=".run")
    for stack in (local, ray_local):
        stack.add_argument("--group-nice", type=int, default=DEV_STACK_GROUP_NICE, choices=range(20),
                           metavar="0-19", help="nice of this session's scheduling group while the stack "
                           "runs, so the rest of the machine gets a core first (0 = leave it; default "
                           f"{DEV_STACK_GROUP_NICE})")
    args = parser.parse_args(args_in)

    if args.command == "models" and args.models_command == "build-tiny":
        from chatstack.models.tiny import build_tiny_models, fingerprint

        dirs = build_tiny_models(args.dir)
        print(json.dumps({k: str(v) for k, v in dirs.items()}, indent=2))
        print(f"fingerprint: {len(fingerprint(args.dir))} files hashed into {args.dir}/MANIFEST.json")
        return 0
    if args.command == "models" and args.models_command == "train-reward":
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
    if args.command == "preferences":
        import grpc

        from chatstack.preferences.export import ExportSettings, export

        try:
            report = export(ExportSettings(
                args.session_address, Path(args.out), args.format, args.since, args.owner,
                [k for k in args.kinds.split(",") if k], args.min_margin, application=args.application,
                operator=args.operator))
        except ValueError as exc:
            print(f"chatstack preferences export: {exc}", file=sys.stderr)
            return 2
        except grpc.RpcError as exc:
            print(f"chatstack preferences export: the session service at {args.session_address} answered "
                  f"{exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        print(json.dumps({"events": report.events, "rows": report.rows, "out": args.out,
                          "by_signal": dict(report.by_signal)}, indent=2))
        return 0
    if args.command == "keys":
        from chatstack.gateway.auth import hash_key, new_key_line

        if args.keys_command == "new":
            key, line = new_key_line(args.owner)
            print(f"key:  {key}\nline: {line}")
        else:
            print(hash_key(args.key))
        return 0
    if args.command == "run-ray":
        from chatstack.serve.local import run_ray_stack

        return run_ray_stack(args.config, args.models_dir, args.run_dir, args.group_nice)
    if args.command == "run-local":
        from chatstack.local_stack import run_local_stack

        return run_local_stack(args.models_dir, args.run_dir, args.group_nice)
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
