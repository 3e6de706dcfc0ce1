"""Real workers and their database connections (PostgreSQL: pg_stat_activity shows them)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from djtasks import states
from tests.support import wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAIT = 20


def other_backends() -> set[int]:
    """Backend pids of every other session on the test database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"  # not autovacuum
        )
        return {row[0] for row in cursor.fetchall()}


def test_a_worker_keeps_its_connections_from_task_to_task(worker: Any) -> None:
    worker(concurrency=2)
    warm_up = [tasks.record.delay(i) for i in range(8)]  # both children get some
    assert [r.get(timeout=WAIT) for r in warm_up] == list(range(8))
    before = other_backends()
    results = [tasks.record.delay(i) for i in range(40)]
    assert [r.get(timeout=WAIT) for r in results] == list(range(40))
    # Same sessions: no reconnect per task, whatever CONN_MAX_AGE says.
    assert other_backends() == before


def test_a_worker_recovers_when_the_database_drops_its_connections(worker: Any) -> None:
    w = worker(concurrency=1)
    assert tasks.add.delay(1, 1).get(timeout=WAIT) == 2
    assert tasks.record.delay("warm").get(timeout=WAIT) == "warm"
    dropped = other_backends()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(dropped)]
        )
    wait_until(lambda: not (other_backends() & dropped), message="the sessions to end")

    # The worker reconnects and claims again; a task run by the child whose
    # session was dropped may fail once, the next one runs.
    assert tasks.add.delay(2, 2).get(timeout=WAIT) == 4
    first = tasks.record.delay("after")
    first.get(timeout=WAIT, propagate=False)
    assert first.state in (states.SUCCESS, states.FAILURE)
    assert tasks.record.delay("again").get(timeout=WAIT) == "again"
    assert w.alive()
    now = other_backends()
    assert now, "the worker has no session"
    assert not now & dropped  # new sessions, not the dropped ones
