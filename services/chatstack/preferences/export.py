"""`chatstack preferences export`: stored preference events, read from the session service's
ExportPreferences, written as JSONL training data (see `chatstack.preferences.rules`)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from chatstack.core.request_context import OWNER_KEY
from chatstack.preferences import rules
from chatstack.v1 import preference_pb2, session_pb2, session_pb2_grpc

KINDS = {name.removeprefix("PREFERENCE_KIND_").lower(): value
         for name, value in preference_pb2.PreferenceKind.items() if value}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class ExportSettings:
    """What to export and how."""

    session_address: str
    out: Path
    format: str = "pairs"
    since: str = ""  # ISO-8601 time or a duration back from now (90m, 24h, 7d)
    owner: str = ""
    kinds: Sequence[str] = ()
    min_margin: float = 0.0
    timeout_seconds: float = 300.0
    application: str = ""  # the Serve application, when session_address is Ray Serve's gRPC proxy
    operator: str = "operator"  # who exports: the identity the session service logs


@dataclass
class ExportReport:
    """What an export read and wrote."""

    events: int = 0
    rows: int = 0
    by_signal: Counter[str] = field(default_factory=Counter)


def since_ms(since: str, now: float | None = None) -> int:
    """Milliseconds since the epoch of `since` (ISO-8601, or a duration back from now)."""
    if not since:
        return 0
    match = _RELATIVE.match(since.strip())
    if match:
        back = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return int(((time.time() if now is None else now) - back) * 1000)
    try:
        return int(datetime.fromisoformat(since).timestamp() * 1000)
    except ValueError as exc:
        raise ValueError(f"since: {since!r} is neither an ISO-8601 time nor a duration like 24h or 7d"
                         ) from exc


def read_events(settings: ExportSettings) -> Iterator[preference_pb2.PreferenceEvent]:
    """The stored events the settings select, oldest first."""
    unknown = [k for k in settings.kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"kinds: {', '.join(unknown)} not among {', '.join(KINDS)}")
    request = session_pb2.ExportPreferencesRequest(
        owner=settings.owner, kinds=[KINDS[k] for k in settings.kinds])  # type: ignore[misc]
    start = since_ms(settings.since)
    if start:
        request.since.CopyFrom(Timestamp(seconds=start // 1000, nanos=(start % 1000) * 1_000_000))
    with grpc.insecure_channel(settings.session_address) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        metadata = ((OWNER_KEY, settings.operator),) + (
            (("application", settings.application),) if settings.application else ())
        for reply in stub.ExportPreferences(request, timeout=settings.timeout_seconds, metadata=metadata):
            yield reply.event


def export(settings: ExportSettings) -> ExportReport:
    """Read the events and write the rows of `settings.format` to `settings.out` (JSONL)."""
    if settings.format not in rules.FORMATS:
        raise ValueError(f"format: {settings.format!r} is not one of {', '.join(rules.FORMATS)}")
    report = ExportReport()
    events = list(read_events(settings))
    report.events = len(events)
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    partial = settings.out.with_name(settings.out.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        for row in rules.rows(events, settings.format, settings.min_margin):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            report.rows += 1
            report.by_signal[row["signal"]] += 1
    partial.replace(settings.out)  # a reader never sees half a file
    return report
