"""`chatstack keys new OWNER` and `chatstack keys hash KEY`."""

from __future__ import annotations

import argparse
from typing import Any


def add(sub: Any) -> None:
    """Register `keys new` and `keys hash`."""
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    new_key = keys.add_parser("new", help="make a key for OWNER; prints the key and its keys-file line")
    new_key.add_argument("owner")
    new_key.set_defaults(run=new)
    hash_cmd = keys.add_parser("hash", help="the keys-file hash of KEY")
    hash_cmd.add_argument("key")
    hash_cmd.set_defaults(run=hashed)


def new(args: argparse.Namespace) -> int:
    """Print a new key for the owner and its keys-file line."""
    from chatstack.gateway.auth import new_key_line

    key, line = new_key_line(args.owner)
    print(f"key:  {key}\nline: {line}")
    return 0


def hashed(args: argparse.Namespace) -> int:
    """Print the keys-file hash of a key."""
    from chatstack.gateway.auth import hash_key

    print(hash_key(args.key))
    return 0
