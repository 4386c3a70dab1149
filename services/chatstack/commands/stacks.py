"""`chatstack run-local` and `chatstack run-ray`: the whole stack on this machine."""

from __future__ import annotations

import argparse
from typing import Any

from chatstack.catalog import DEV_STACK_GROUP_NICE


def add(sub: Any) -> None:
    """Register `run-local` and `run-ray`."""
    local = sub.add_parser("run-local", help="start every service on localhost (make run)")
    local.add_argument("--models-dir", default=".models/tiny")
    local.add_argument("--run-dir", default=".run")
    local.set_defaults(run=run_local)
    ray_local = sub.add_parser("run-ray", help="start the stack on a local Ray Serve (make run-ray)")
    ray_local.add_argument("--config", default="deploy/ray/serve-config.yaml")
    ray_local.add_argument("--models-dir", default=".models/tiny")
    ray_local.add_argument("--run-dir", default=".run")
    ray_local.set_defaults(run=run_ray)
    for stack in (local, ray_local):
        stack.add_argument("--group-nice", type=int, default=DEV_STACK_GROUP_NICE, choices=range(20),
                           metavar="0-19", help="nice of this session's scheduling group while the stack "
                           "runs, so the rest of the machine gets a core first (0 = leave it; default "
                           f"{DEV_STACK_GROUP_NICE})")


def run_local(args: argparse.Namespace) -> int:
    """Every service as a local process, until SIGTERM."""
    from chatstack.local_stack import run_local_stack

    return run_local_stack(args.models_dir, args.run_dir, args.group_nice)


def run_ray(args: argparse.Namespace) -> int:
    """The stack on a local Ray Serve, until SIGTERM."""
    from chatstack.serve.local import run_ray_stack

    return run_ray_stack(args.config, args.models_dir, args.run_dir, args.group_nice)
