"""API-key authentication: `authorization: Bearer <key>` -> owner id.

Keys are configured hashed (sha256 hex), never in plain text: `<owner>:<sha256>` per line in a
file (a mounted Secret) and/or in config. `chatstack keys new OWNER` prints a fresh key and its
line.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from pathlib import Path

from chatstack.core.errors import Unauthenticated

BEARER = "bearer "


def hash_key(key: str) -> str:
    """sha256 hex of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_line(owner: str) -> tuple[str, str]:
    """A fresh random key and its `<owner>:<sha256>` line."""
    key = "cs-" + secrets.token_urlsafe(24)
    return key, f"{owner}:{hash_key(key)}"


def parse_key_lines(lines: Iterable[str]) -> dict[str, str]:
    """`<owner>:<sha256>` lines (blank lines and # comments skipped) -> {sha256: owner}."""
    table: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        owner, sep, digest = line.rpartition(":")
        digest = digest.strip().lower()
        well_formed = len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
        if not sep or not owner.strip() or not well_formed:
            raise ValueError(f"API key line {number}: expected '<owner>:<sha256 hex>'")
        table[digest] = owner.strip()
    return table


class ApiKeyAuthenticator:
    """Maps a bearer key to its owner by the key's sha256."""

    def __init__(self, owners_by_hash: dict[str, str]) -> None:
        self._owners = owners_by_hash

    @classmethod
    def from_config(cls, keys_file: str, inline: str) -> ApiKeyAuthenticator:
        """Keys from a file and/or a comma-separated config value."""
        table: dict[str, str] = {}
        if keys_file:
            table.update(parse_key_lines(Path(keys_file).read_text().splitlines()))
        if inline:
            table.update(parse_key_lines(inline.split(",")))
        return cls(table)

    def owner_for(self, authorization: str | None) -> str:
        """The owner of `authorization: Bearer <key>`; UNAUTHENTICATED if missing or unknown."""
        if not authorization:
            raise Unauthenticated("missing API key: send 'authorization: Bearer <key>' metadata")
        if not authorization.lower().startswith(BEARER):
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <key>'")
        owner = self._owners.get(hash_key(authorization[len(BEARER):].strip()))
        if owner is None:
            raise Unauthenticated("unknown API key")
        return owner
