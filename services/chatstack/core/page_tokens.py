"""Opaque page tokens: what a list RPC hands out is the only thing it takes back.

A token is the URL-safe base64 of `<kind>:<offset>`, so a client cannot mistake it for a number
and a token of one listing (turns) is rejected by another (sessions). Decoding is strict: ASCII
only, the issuing kind, an offset of at most nine ASCII digits; anything else is INVALID_ARGUMENT
naming `page_token` (never a backend error).
"""

from __future__ import annotations

import base64
import binascii
import re

from chatstack.core.errors import InvalidRequest

MAX_OFFSET = 999_999_999
_BODY = re.compile(r"([a-z]{1,16}):([0-9]{1,9})")


def encode_page_token(kind: str, offset: int) -> str:
    """The token of the page starting at `offset` of listing `kind`."""
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode().rstrip("=")


def decode_page_token(token: str, kind: str) -> int:
    """The offset a token of listing `kind` stands for ("" = the first page, 0)."""
    if not token:
        return 0
    invalid = InvalidRequest("page_token: not a token this listing issued; pass next_page_token "
                             "back unchanged")
    if len(token) > 64 or not token.isascii():
        raise invalid
    try:
        body = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise invalid from None
    match = _BODY.fullmatch(body)
    if match is None or match.group(1) != kind or int(match.group(2)) > MAX_OFFSET:
        raise invalid
    return int(match.group(2))
