"""`chatstack preferences export`: stored preference events as training data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chatstack.catalog import SESSION


def add(sub: Any) -> None:
    """Register `preferences export`."""
    prefs = sub.add_parser("preferences", help="RLHF data").add_subparsers(dest="prefs_command",
                                                                           required=True)
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
    exp.set_defaults(run=export)


def export(args: argparse.Namespace) -> int:
    """Write the export; print what it wrote (1 when the session service refused, 2 on bad flags)."""
    import grpc

    from chatstack.preferences.export import ExportSettings
    from chatstack.preferences.export import export as run_export

    try:
        report = run_export(ExportSettings(
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
