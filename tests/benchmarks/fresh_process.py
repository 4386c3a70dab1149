"""Run a benchmark's client in a fresh interpreter, apart from the process that launched the servers.

Measured here: the same gRPC client against the same GenerationService saw intermittent stalls
(every message of a stream held back until the stream ended, ~230 ms TTFT instead of ~6 ms, on
a few of every 15 streams, and TTFT p50 of 0.5-0.9 s at 16-64 streams) when it ran in the
process that had launched the service, and none in over 100 streams from a fresh process, the
way real clients (the gateway, applications) run. We did not find the cause in the launcher
process; the benchmarks measure clients the way they are deployed.

A plain `python` subprocess (arguments and result pickled through files), not multiprocessing:
a multiprocessing pool in the launcher coincided with `vllm serve`, started later as another
child, being shut down mid-benchmark.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_RUNNER = """
import importlib, pickle, sys
module, name, args_path, out_path = sys.argv[1:5]
mod = importlib.import_module(module)
sys.modules["__main__"] = mod  # arguments pickled by a benchmark run as __main__ (python -m)
fn = getattr(mod, name)
with open(args_path, "rb") as f:
    args = pickle.load(f)
result = fn(*args)
with open(out_path, "wb") as f:
    pickle.dump(result, f)
"""


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a new interpreter (fn importable by module and name, args and result
    picklable); returns its result. Its output goes to this process's stdout/stderr."""
    module = fn.__module__
    if module == "__main__":  # a benchmark run with `python -m tests.benchmarks.<name>`
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        args_path, out_path = Path(tmp, "args.pickle"), Path(tmp, "result.pickle")
        args_path.write_bytes(pickle.dumps(args))
        subprocess.run([sys.executable, "-c", _RUNNER, module, fn.__name__, str(args_path),
                        str(out_path)], check=True)
        result: T = pickle.loads(out_path.read_bytes())
        return result
