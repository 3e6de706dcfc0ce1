"""``python -m benchmarks.explain``: ``EXPLAIN (ANALYZE, BUFFERS)`` of the worker's
hot statements — the claim, the settle (batched complete + start) and the
rescue — on W4's table (the finished history plus the pending backlog).

The statements are not copied here: the real ``djtasks.queue`` functions run
inside one transaction, and an execute wrapper explains each statement
they send, with their own parameters, in a savepoint that is rolled back
before the statement runs for real. Everything is rolled back at the end,
on a throw-away copy of the template.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import databases


class _RollbackError(Exception):
    pass


def explain_workload(ctx: Any) -> dict[str, Any]:
    """Runs in a driver process on a copy of W4's template."""
    import psycopg
    from django.db import transaction
    from django.utils import timezone

    from djtasks import queue, states

    from . import harness as h

    size = ctx.size
    batch = int(os.environ.get("DJTASKS_BENCH_EXPLAIN_BATCH", "8"))
    h.load(
        "bench.noop", size.w4_pending, size.load_chunk, eta=timezone.now() + dt.timedelta(days=1)
    )
    h.load("bench.noop", size.w4_tasks, size.load_chunk)
    h.settle_database()
    plans: list[dict[str, Any]] = []
    capturing: list[str] = []
    busy: list[bool] = []
    original = psycopg.Cursor.execute

    # Patched on psycopg's cursor, not through Django's execute_wrapper: the
    # hot statements may use a raw psycopg cursor (prepared statements).
    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else None
        verb = text.lstrip().split(None, 1)[0].upper() if text and text.strip() else ""
        if capturing and not busy and verb in ("SELECT", "WITH", "UPDATE", "INSERT", "DELETE"):
            busy.append(True)
            try:
                with psycopg.ClientCursor(self.connection) as c:
                    c.execute("SAVEPOINT bench_explain")
                    c.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params)
                    plan = "\n".join(r[0] for r in c.fetchall())
                    c.execute("ROLLBACK TO SAVEPOINT bench_explain")
                    c.execute("RELEASE SAVEPOINT bench_explain")
            finally:
                busy.clear()
            plans.append({"statement": capturing[0], "sql": " ".join(text.split()), "plan": plan})
        return original(self, query, params, **kwargs)

    @contextmanager
    def capture(label: str) -> Iterator[None]:
        capturing.append(label)
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        try:
            yield
        finally:
            psycopg.Cursor.execute = original  # type: ignore[method-assign]
            capturing.clear()

    now = timezone.now()
    me = "bench-explain@host"
    try:
        with transaction.atomic():
            warm = transaction.savepoint()
            queue.claim(me, ["default"], batch, now, 60)  # warm the cache first
            transaction.savepoint_rollback(warm)
            with capture(f"claim (limit {batch})"):
                claimed = queue.claim(me, ["default"], batch, now, 60)
            half = len(claimed) // 2
            queue.start(me, claimed[:half], now)
            outcomes = [
                queue.Outcome(
                    c.id, c.attempt, states.SUCCESS, now, 0.0001, result="null",
                    result_content_type="application/json", task_name=c.name,
                )
                for c in claimed[:half]
            ]  # fmt: skip
            with capture(f"settle ({half} outcomes + start {len(claimed) - half})"):
                queue.settle(outcomes, me, claimed[half:], now)
            # A worker that stopped renewing 100 claims: rescue has work to do.
            queue.claim("bench-lost@host", ["default"], 100, now, -1)
            with capture("rescue (100 expired leases)"):
                queue.rescue_expired(now + dt.timedelta(seconds=1))
            raise _RollbackError
    except _RollbackError:
        pass
    return {"plans": plans, "table_rows": h.count_rows(), "batch": batch}


def run(harness: Any, batch: int = 8) -> dict[str, Any]:
    """EXPLAIN the hot statements on a fresh copy of ``harness``'s W4 template."""
    harness.ensure_template()
    target = databases.Target("postgres", harness.name("explain"))
    harness.pg.create(target.name, template=harness.template)
    try:
        return harness.drive(
            target, "explain", 1, extra_env={"DJTASKS_BENCH_EXPLAIN_BATCH": str(batch)}
        )
    finally:
        harness.pg.drop(target.name)


def render(result: dict[str, Any], size: str) -> str:
    out = [f"EXPLAIN (ANALYZE, BUFFERS) on W4's table: {result['table_rows']:,} rows ({size})"]
    for item in result["plans"]:
        out.append(f"\n== {item['statement']}\n{item['sql']}\n\n{item['plan']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from .cli import Harness
    from .cli import parse_args as harness_args

    p = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__)
    p.add_argument("--size", choices=["tiny", "full"], default="full")
    p.add_argument(
        "--pg-url", default=os.environ.get("DJTASKS_BENCH_PG_URL", databases.DEFAULT_PG_URL)
    )
    p.add_argument("--db-name", default=databases.PREFIX)
    p.add_argument(
        "--batch", type=int, default=8, help="rows per claim (default 8: -c 2 × prefetch 4)"
    )
    p.add_argument("--json", action="store_true", help="print the plans as JSON")
    args = p.parse_args(argv)
    harness = Harness(
        harness_args(
            ["--db", "postgres", "--size", args.size, "--pg-url", args.pg_url,
             "--db-name", args.db_name]
        )
    )  # fmt: skip
    try:
        record = run(harness, args.batch)
    finally:
        harness.cleanup()
    if not record.get("ok"):
        print(f"explain failed: {record.get('error')}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(record["result"], indent=1))
    else:
        print(render(record["result"], args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
