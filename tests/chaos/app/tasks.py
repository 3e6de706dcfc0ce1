"""Tasks the chaos suite's workers run.

Every task writes its side effect to :class:`~tests.chaos.app.models.Effect`
(UNIQUE task id), so the suite proves "exactly once" with the database's own
constraint rather than by counting log lines.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from django.db import connection

from djtasks import task


def write_effect(request: Any, counted: bool) -> None:
    """One effect row for this task id.

    ``counted=False``: a plain INSERT, so a second run of the task fails on
    the UNIQUE key (the proof for tasks that must never run twice).
    ``counted=True``: an upsert that counts the runs (``acks_late`` tasks,
    which run again when their worker dies, and the tasks a test watches).
    """
    from .models import Effect

    if not counted:
        Effect.objects.create(task_id=request.id, attempt=request.attempt, pid=os.getpid())
        return
    table = Effect._meta.db_table  # our own model's: not user input
    sql = (
        f"INSERT INTO {table} (task_id, runs, attempt, pid, created) "  # noqa: S608
        "VALUES (%s, 1, %s, %s, CURRENT_TIMESTAMP) "
        f"ON CONFLICT (task_id) DO UPDATE SET runs = {table}.runs + 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [request.id, request.attempt, os.getpid()])


@task(name="chaos.effect", bind=True)
def effect(self: Any, i: int, work: float = 0.0) -> int:
    """At most once: a second run fails on the UNIQUE key."""
    time.sleep(work / 2)
    write_effect(self.request, counted=False)
    time.sleep(work / 2)
    return i


@task(name="chaos.effect_late", bind=True, acks_late=True)
def effect_late(self: Any, i: int, work: float = 0.0) -> int:
    """At least once (acks_late): a re-run after a kill is counted, not refused."""
    time.sleep(work / 2)
    write_effect(self.request, counted=True)
    time.sleep(work / 2)
    return i


def _slow(request: Any, seconds: float) -> dict[str, Any]:
    write_effect(request, counted=True)
    time.sleep(seconds)
    return {"attempt": request.attempt, "pid": os.getpid(), "hostname": request.hostname}


@task(name="chaos.slow", bind=True)
def slow(self: Any, seconds: float) -> dict[str, Any]:
    """Counts its runs, sleeps, returns which attempt and process finished."""
    return _slow(self.request, seconds)


@task(name="chaos.slow_late", bind=True, acks_late=True)
def slow_late(self: Any, seconds: float) -> dict[str, Any]:
    return _slow(self.request, seconds)


def _leave(request: Any, how: str) -> None:
    write_effect(request, counted=True)
    if how == "sys.exit":
        sys.exit(3)
    if how == "SystemExit(0)":
        raise SystemExit(0)
    if how == "os._exit":
        os._exit(7)
    if how == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if how == "GeneratorExit":
        raise GeneratorExit
    raise ValueError(f"unknown way out {how!r}")


@task(name="chaos.leave", bind=True)
def leave(self: Any, how: str) -> None:
    """Leaves the way ``how`` says: ``sys.exit``, ``os._exit``, ``KeyboardInterrupt``..."""
    _leave(self.request, how)


@task(name="chaos.leave_late", bind=True, acks_late=True)
def leave_late(self: Any, how: str) -> None:
    _leave(self.request, how)


@task(name="chaos.db_work", bind=True)
def db_work(self: Any, seconds: float) -> int:
    """Queries for ``seconds`` (its connection may be cut meanwhile), then writes its effect."""
    deadline = time.monotonic() + seconds
    queries = 0
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        queries += 1
        time.sleep(0.01)
    write_effect(self.request, counted=False)
    return queries


@task(name="chaos.charge", bind=True, sensitive=("card_number", "cvv"))
def charge(self: Any, card_number: str, amount: int, cvv: str = "") -> int:
    """Takes secrets: its ``card_number`` and ``cvv`` are marked sensitive."""
    write_effect(self.request, counted=True)
    if amount < 0:
        raise ValueError("a negative amount")
    return amount


@task(name="chaos.unique", unique_key=True)
def unique(n: int) -> int:
    """Unique by its arguments: one unfinished call per ``n`` at a time."""
    return n
