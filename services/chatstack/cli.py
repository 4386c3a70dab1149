"""The `chatstack` command: `models build-tiny DIR`, `models train-reward`, `preferences export`,
`serve SERVICE ...`, `chat`, `keys`, `run-local`, `run-ray` (each in `chatstack.commands`, but
`chat` and `serve`, whose flags their own parsers read)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from chatstack.commands import keys, models, preferences, stacks


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
    for command in (models, preferences):
        command.add(sub)
    sub.add_parser("serve", help="run one service: chatstack serve tokenizer --port ...")
    sub.add_parser("chat", help="interactive chat with the gateway (chatstack chat --help)")
    for command in (keys, stacks):
        command.add(sub)
    args = parser.parse_args(args_in)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
