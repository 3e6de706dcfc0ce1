"""``manage.py taskworker``: run tasks from the database queue."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djtasks.conf import settings
from djtasks.worker.banner import banner
from djtasks.worker.consumer import Worker, WorkerOptions, default_hostname, expand_hostname
from djtasks.worker.pools import POOLS

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _autoscale(value: str) -> tuple[int, int]:
    high, _, low = value.partition(",")
    try:
        pair = (int(high), int(low or 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--autoscale takes MAX,MIN, not {value!r}") from None
    if pair[1] < 1 or pair[0] < pair[1]:
        raise argparse.ArgumentTypeError(f"--autoscale needs MAX >= MIN >= 1, not {value!r}")
    return pair


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Run a worker that claims tasks from the database queue and runs them."
    requires_system_checks: list[str] = []  # checked below, with a clear exit

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-Q",
            "--queues",
            default=None,
            help="comma-separated queues to consume (default: DJTASKS_DEFAULT_QUEUE)",
        )
        parser.add_argument(
            "-c",
            "--concurrency",
            type=_positive_int,
            default=None,
            help="tasks run at once (default: number of CPUs)",
        )
        parser.add_argument(
            "-P",
            "--pool",
            choices=sorted(POOLS),
            default="prefork",
            help="prefork (default): child processes; threads; solo: inline",
        )
        parser.add_argument(
            "-n",
            "--hostname",
            default=None,
            help="worker name (%%h host, %%n short host, %%p pid); default PID@HOST",
        )
        parser.add_argument(
            "-l",
            "--loglevel",
            default="INFO",
            type=str.upper,
            choices=LEVELS,
            help="log level of the worker's messages",
        )
        parser.add_argument(
            "--max-tasks-per-child",
            type=_positive_int,
            default=None,
            help="replace a prefork child after this many tasks",
        )
        parser.add_argument(
            "--max-memory-per-child",
            type=_positive_int,
            default=None,
            metavar="KIB",
            help="replace a prefork child after a task leaves it above this resident memory (KiB)",
        )
        parser.add_argument(
            "--autoscale",
            type=_autoscale,
            default=None,
            metavar="MAX,MIN",
            help="grow the pool up to MAX while tasks wait, shrink to MIN when idle",
        )
        parser.add_argument(
            "--prefetch-multiplier",
            type=_positive_int,
            default=None,
            help="claim up to concurrency × this many tasks at once",
        )
        parser.add_argument(
            "--poll-interval",
            type=_positive_float,
            default=None,
            help="seconds between polls when idle (default DJTASKS_POLL_INTERVAL)",
        )
        parser.add_argument(
            "--max-tasks",
            type=_positive_int,
            default=None,
            help="stop (warm) after this many tasks",
        )
        parser.add_argument("--burst", action="store_true", help="stop once the queues are empty")

    def handle(self, *args: Any, **options: Any) -> None:
        self.check(display_num_errors=False)
        _configure_logging(options["loglevel"])
        _wait_for_database()
        _require_migrations()
        if options["pool"] != "prefork" and (
            options["max_tasks_per_child"] or options["max_memory_per_child"]
        ):
            raise CommandError(
                "--max-tasks-per-child and --max-memory-per-child need the prefork pool"
            )
        if options["pool"] == "solo" and options["autoscale"]:
            raise CommandError("--autoscale needs the prefork or threads pool")
        queues = [
            q.strip() for q in (options["queues"] or settings.DEFAULT_QUEUE).split(",") if q.strip()
        ]
        if not queues:
            raise CommandError("-Q needs at least one queue name")
        opts = WorkerOptions(
            queues=queues,
            concurrency=(
                options["autoscale"][1]
                if options["autoscale"]
                else options["concurrency"] or os.cpu_count() or 1
            ),
            pool=options["pool"],
            hostname=expand_hostname(options["hostname"])
            if options["hostname"]
            else default_hostname(),
            prefetch_multiplier=options["prefetch_multiplier"] or settings.PREFETCH_MULTIPLIER,
            poll_interval=options["poll_interval"] or settings.POLL_INTERVAL,
            lease_seconds=settings.VISIBILITY_TIMEOUT,
            max_tasks_per_child=options["max_tasks_per_child"],
            max_memory_per_child=options["max_memory_per_child"],
            autoscale=options["autoscale"],
            max_tasks=options["max_tasks"],
            burst=options["burst"],
        )
        worker = Worker(opts)
        self.stdout.write(banner(worker))
        self.stdout.flush()
        worker.run()


def _wait_for_database() -> None:
    """Start even while the database is down (a restart, a failover): wait for
    it with backoff instead of dying with a traceback."""
    from django.db import OperationalError, connections

    conn = connections[settings.DATABASE]
    delay = 0.5
    while True:
        try:
            conn.ensure_connection()
            return
        except OperationalError as exc:
            delay = min(30.0, delay * 2)
            logging.getLogger("djtasks.worker").error(
                "database %r unavailable (%s); retrying in %.0fs",
                settings.DATABASE,
                str(exc).strip().splitlines()[0],
                delay,
            )
            conn.close()
            time.sleep(delay)


def _require_migrations() -> None:
    """Refuse to start on a database whose djtasks tables are missing or old."""
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    alias = settings.DATABASE
    executor = MigrationExecutor(connections[alias])
    pending = [
        m
        for m, _ in executor.migration_plan(executor.loader.graph.leaf_nodes())
        if m.app_label == "djtasks"
    ]
    if pending:
        raise CommandError(
            f"the djtasks tables in database {alias!r} are not up to date "
            f"({len(pending)} migration(s) not applied): run `python manage.py migrate`"
        )


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("djtasks")
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        # No LOGGING config for djtasks: log to stderr like any worker.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("[%(asctime)s: %(levelname)s/%(processName)s] %(message)s")
        )
        logger.addHandler(handler)
        logger.propagate = False
