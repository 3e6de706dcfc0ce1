"""One workload in a fresh process: ``python -m benchmarks.driver W2 --size full
--out result.json``. The database comes from the environment (see
``benchmarks/settings.py``); :mod:`benchmarks.cli` starts one driver per
workload and run, so no run inherits another's caches, connections or heap.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn


def _setup() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django

    django.setup()


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise SystemExit(128 + signum)  # run the finally blocks that reap workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.driver")
    parser.add_argument("workload")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--loglevel", default="WARNING")
    parser.add_argument("--run", type=int, default=1)
    parser.add_argument("--calls", type=int, default=0)  # enqueue-part
    parser.add_argument("--go-fd", type=int, default=-1)  # enqueue-part
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    _setup()
    from . import workloads
    from .sizes import SIZES

    if args.workload == "enqueue-part":
        workloads.enqueue_part(args.calls, args.go_fd, args.out)
        return 0
    workdir = args.workdir or Path(args.out).parent
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = workloads.Context(SIZES[args.size], workdir, args.loglevel, args.run)
    if args.workload == "explain":
        from .explain import explain_workload

        workloads.WORKLOADS["explain"] = explain_workload
    record: dict[str, Any] = {
        "workload": args.workload,
        "run": args.run,
        "loadavg_before": os.getloadavg(),
    }
    begin = time.time()
    try:
        record["result"] = workloads.WORKLOADS[args.workload](ctx)
        record["ok"] = True
    except Exception as exc:
        record["ok"] = False
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
    record["seconds"] = time.time() - begin
    record["loadavg_after"] = os.getloadavg()
    args.out.write_text(json.dumps(record, indent=1, default=str))
    if not record["ok"]:
        print(record["traceback"], file=sys.stderr)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
