"""The start-up banner of ``taskworker``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import connections

from .. import __version__, queue
from ..registry import tasks as registry

if TYPE_CHECKING:
    from .consumer import Worker


def banner(worker: Worker) -> str:
    opts = worker.options
    conn = connections[queue.db_alias()]
    db = conn.settings_dict
    where = (
        db.get("NAME")
        if conn.vendor == "sqlite"
        else f"{db.get('USER') or ''}@{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"
        f"/{db.get('NAME')}"
    )
    wake = "LISTEN/NOTIFY + poll" if conn.vendor == "postgresql" else "poll"
    lines = [
        f"djtasks {__version__} worker {worker.name}",
        f"  database:    {conn.vendor} {where} (alias {queue.db_alias()!r})",
        f"  queues:      {', '.join(opts.queues)}",
        f"  pool:        {opts.pool} × {opts.concurrency} (prefetch ×{opts.prefetch_multiplier})",
        f"  wake-up:     {wake}, every {opts.poll_interval}s when idle",
        f"  lease:       {opts.lease_seconds}s",
        *([f"  autoscale:   {opts.autoscale[1]}..{opts.autoscale[0]}"] if opts.autoscale else []),
        *(
            [
                "  limits:      threads pool: soft time limits only (a thread cannot be killed; "
                "time_limit is not enforced)"
            ]
            if opts.pool == "threads"
            else []
        ),
        *(["  limits:      solo pool: no time limits"] if opts.pool == "solo" else []),
        "  tasks:",
    ]
    names = registry.names()
    lines.extend(f"    . {n}" for n in names)
    if not names:
        lines.append("    (none registered: add tasks.py to an installed app)")
    return "\n".join(lines) + "\n"
