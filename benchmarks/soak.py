"""The long soak of issue 9: the chaos suite's fleet at scale, on a database of its own.

Four real workers (by default) run 100,000 tasks while a worker or a prefork
child is SIGKILLed every few seconds (and, optionally, every session is cut
or the PostgreSQL server restarted once); then every row is checked against
the side table the tasks write (UNIQUE task id). The figures are those of
``docs/guarantees.md``::

    python -m benchmarks.soak --tasks 100000                       # PostgreSQL (DATABASE_URL)
    python -m benchmarks.soak --tasks 20000 --sqlite               # SQLite file
    python -m benchmarks.soak --tasks 100000 --no-faults           # the clean baseline
    CI=1 python -m benchmarks.soak --restart-postgres              # restarts the server!
    DJTASKS_CHAOS_PG_RESTART="..." python -m benchmarks.soak --restart-postgres \
        --database-url postgres://postgres@127.0.0.1:5433/postgres    # a private server

It creates ``djtasks_soak_<pid>`` (or a temporary SQLite file), migrates it,
runs :class:`tests.chaos.fleet.Fleet`, prints one ``soak:`` line and a JSON
report, drops the database (``--keep`` keeps it) and exits 1 if any promise
was broken (a task lost or stuck, a plain task run twice, a SUCCESS without
its effect, a failure the faults do not explain).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/djtasks"


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low), float(high or low)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    p.add_argument("--late-share", type=float, default=0.5, help="share of acks_late tasks")
    p.add_argument("--work", type=float, default=0.001, help="seconds each task sleeps")
    p.add_argument("--lease", type=float, default=5.0, help="the workers' lease, seconds")
    p.add_argument(
        "--kill-every",
        type=_pair,
        default=(3.0, 8.0),
        metavar="MIN,MAX",
        help="seconds between two SIGKILLs (random in the range)",
    )
    p.add_argument(
        "--child-share",
        type=float,
        default=0.25,
        help="share of the kills aimed at one prefork child",
    )
    p.add_argument(
        "--terminate-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="PostgreSQL: cut every worker session this often",
    )
    p.add_argument(
        "--restart-postgres",
        action="store_true",
        help="restart the local PostgreSQL cluster once (needs CI=1: it cuts "
        "every session on the server, not only ours)",
    )
    p.add_argument("--no-faults", action="store_true", help="no kills: the clean baseline")
    p.add_argument("--sqlite", action="store_true", help="run on a temporary SQLite file")
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_URL),
        help="PostgreSQL server (the database name is ignored)",
    )
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--keep", action="store_true", help="keep the database and the logs")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    if args.restart_postgres and not (
        os.environ.get("CI") or os.environ.get("DJTASKS_CHAOS_PG_RESTART")
    ):
        p.error(
            "--restart-postgres restarts the whole server: set CI=1 if nothing else uses it, "
            "or DJTASKS_CHAOS_PG_RESTART to the restart command of a private server"
        )
    return args


def _setup_database(args: argparse.Namespace, logs: Path) -> tuple[str, Any]:
    """Point tests.settings at a fresh database; return its name and a drop callback."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DJTASKS_TEST_USE_TEST_DB"] = "1"
    if args.sqlite:
        path = logs / "soak.sqlite3"
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
        os.environ["DJTASKS_TEST_DB_NAME"] = str(path)
        return str(path), lambda: None
    import psycopg

    url = urlsplit(args.database_url)
    name = f"djtasks_soak_{os.getpid()}"
    server = {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["DJTASKS_TEST_DB_NAME"] = name

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')

    return name, drop


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sys.path.insert(0, str(ROOT))
    logs = Path(tempfile.mkdtemp(prefix="djtasks-soak-"))
    name, drop = _setup_database(args, logs)
    import django

    django.setup()
    from django.core.management import call_command

    from tests.chaos.fleet import Faults, Fleet, Plan, spawn_in
    from tests.support import ManagedProcess

    started: list[ManagedProcess] = []
    code = 1
    try:
        call_command("migrate", verbosity=0)
        faults = (
            Faults()
            if args.no_faults
            else Faults(
                kill_every=args.kill_every,
                child_share=args.child_share,
                restart_postgres=args.restart_postgres,
                terminate_every=args.terminate_every,
            )
        )
        plan = Plan(
            workers=args.workers,
            concurrency=args.concurrency,
            pool=args.pool,
            tasks=args.tasks,
            late_share=args.late_share,
            work=args.work,
            lease=args.lease,
            faults=faults,
            timeout=args.timeout,
            seed=args.seed,
            poll=1.0,
        )
        print(
            f"soak: {args.tasks} tasks on {'sqlite ' if args.sqlite else ''}{name}, logs in {logs}",
            flush=True,
        )
        t0 = time.monotonic()
        report = Fleet(plan, spawn_in(logs, started)).run()
        violations = report.violations()
        print(f"soak: {report.line()} (wall {time.monotonic() - t0:.0f}s)", flush=True)
        body = {
            **{k: v for k, v in asdict(report).items() if k not in ("plan", "failures", "states")},
            "states": dict(report.states),
            "failures": {f"{n} {t}": c for (n, t), c in report.failures.items()},
            "plan": {k: v for k, v in asdict(plan).items() if k != "faults"},
            "faults": asdict(faults),
            "violations": violations,
        }
        text = json.dumps(body, indent=2, default=str)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        for line in violations:
            print(f"soak: VIOLATION {line}", file=sys.stderr)
        code = 1 if violations else 0
    finally:
        for proc in started:
            proc.reap()
        if not args.keep:
            drop()
            if code == 0:
                shutil.rmtree(logs, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
