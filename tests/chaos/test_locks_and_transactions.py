"""Scenarios 6 and 7 with a real worker.

``tests/integration/test_queue.py`` proves both on the claim statement with
a second connection; here a live ``taskworker`` meets rows locked by another
session (it runs the others at once and never waits: no worker session is
ever seen waiting on a lock), and tasks enqueued in transactions that
commit, roll back, or roll back a savepoint.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from djtasks import states
from djtasks.models import TaskRecord
from tests.acceptance.helpers import wait_until_finished
from tests.chaos.app import tasks
from tests.chaos.app.models import Effect
from tests.chaos.conftest import report
from tests.conftest import on_postgres
from tests.support import in_other_connection, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def waiting_on_locks() -> list[str]:
    """Queries of other sessions of this database that wait on a lock now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.postgres
def test_rows_locked_by_another_session_are_skipped_never_waited_on(worker: Any) -> None:
    locked = [tasks.effect.apply_async((i,), priority=10).id for i in range(5)]
    free = [tasks.effect.delay(100 + i).id for i in range(5)]
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        # Another application session locks the head of the queue and sits on it.
        with transaction.atomic():
            list(TaskRecord.objects.select_for_update().filter(pk__in=locked))
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=lambda: in_other_connection(hold, timeout=90))
    holder.start()
    try:
        assert holding.wait(10)
        worker(concurrency=2)
        started = time.monotonic()
        seen_waiting: list[str] = []

        def free_done() -> bool:
            seen_waiting.extend(waiting_on_locks())
            return wait_until_finished_now(free)

        wait_until(free_done, 20, interval=0.02, message="the unlocked tasks to run")
        took = time.monotonic() - started
        time.sleep(1.0)  # several claims later, the locked rows are still untouched
        seen_waiting.extend(waiting_on_locks())
        assert set(TaskRecord.objects.filter(pk__in=locked).values_list("state", flat=True)) == {
            states.PENDING
        }
        assert seen_waiting == []
    finally:
        release.set()
        holder.join(30)
    assert wait_until_finished(locked, timeout=20) == {states.SUCCESS: 5}
    report(
        f"locked rows: 5 skipped while locked, 5 others done in {took:.2f}s, "
        f"no worker session ever waited on a lock"
    )


def wait_until_finished_now(ids: list[str]) -> bool:
    return TaskRecord.objects.filter(pk__in=ids, state=states.SUCCESS).count() == len(ids)


def test_transactional_enqueue_with_a_live_worker(worker: Any) -> None:
    worker(concurrency=2)
    assert tasks.effect.delay(0).get(timeout=20) == 0  # the worker is polling

    with transaction.atomic():
        pending = tasks.effect.delay(1)
        # Longer than a poll interval and a NOTIFY: still invisible to everyone else.
        time.sleep(1.5)
        assert (
            in_other_connection(lambda: TaskRecord.objects.filter(pk=pending.id).exists()) is False
        )
        assert not Effect.objects.filter(task_id=pending.id).exists()
    assert pending.get(timeout=20) == 1

    class RollbackError(Exception):
        pass

    with pytest.raises(RollbackError), transaction.atomic():
        gone = tasks.effect.delay(2)
        raise RollbackError

    with transaction.atomic():
        kept = tasks.effect.delay(3)
        try:
            with transaction.atomic():  # a savepoint
                undone = tasks.effect.delay(4)
                raise RollbackError
        except RollbackError:
            pass
    assert kept.get(timeout=20) == 3
    time.sleep(1.0)  # several polls: nothing else turns up
    assert not TaskRecord.objects.filter(pk__in=[gone.id, undone.id]).exists()
    assert not Effect.objects.filter(task_id__in=[gone.id, undone.id]).exists()
    assert gone.state == undone.state == states.PENDING  # unknown ids read as PENDING
    report(
        f"transactional enqueue ({'postgresql' if on_postgres() else 'sqlite'}): invisible "
        "for 1.5 s before commit, nothing after a rollback or a rolled-back savepoint"
    )
