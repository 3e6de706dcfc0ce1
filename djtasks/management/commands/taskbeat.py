"""``manage.py taskbeat``: enqueue periodic tasks (run two or more for availability)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from djtasks import __version__, queue
from djtasks.beat import Beat, default_name
from djtasks.conf import settings

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Run beat: enqueue periodic tasks from DJTASKS_BEAT_SCHEDULE and the admin. "
        "Several beats may run; one leads, the others take over if it stops."
    )
    requires_system_checks: list[str] = []  # checked below, with a clear exit

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-l",
            "--loglevel",
            default="INFO",
            type=str.upper,
            choices=LEVELS,
            help="log level of beat's messages",
        )
        parser.add_argument(
            "--max-interval",
            type=_positive_float,
            default=None,
            help="longest sleep between checks of the schedule, in seconds "
            "(default DJTASKS_BEAT_MAX_LOOP_INTERVAL); on SQLite also how "
            "soon admin edits are seen",
        )
        parser.add_argument(
            "-n", "--hostname", default=None, help="this beat's name (default beat.PID@HOST)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.check(display_num_errors=False)
        _configure_logging(options["loglevel"])
        beat = Beat(
            name=options["hostname"] or default_name(), max_interval=options["max_interval"]
        )
        self.stdout.write(banner(beat))
        self.stdout.flush()
        beat.run()


def banner(beat: Beat) -> str:
    conn = connections[queue.db_alias()]
    entries = settings.BEAT_SCHEDULE or {}
    lines = [
        f"djtasks {__version__} beat {beat.name}",
        f"  database:     {conn.vendor} {conn.settings_dict.get('NAME')} "
        f"(alias {queue.db_alias()!r})",
        f"  leadership:   {beat.elector.mode}"
        + (f" ({beat.lease:g}s lease)" if "lease" in beat.elector.mode else ""),
        f"  max interval: {beat.max_interval:g}s",
        f"  settings:     {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} in "
        "DJTASKS_BEAT_SCHEDULE (plus the schedules in the admin)",
    ]
    return "\n".join(lines) + "\n"


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("djtasks")
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/beat] %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
