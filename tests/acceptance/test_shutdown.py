"""Real workers stopped politely, impolitely, or killed: nothing is lost or stuck."""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from typing import Any

import pytest
from django.db import transaction

from djtasks import states
from djtasks.models import TaskRecord, Worker
from tests.acceptance.helpers import runs, state_counts, wait_for_runs, wait_until_finished
from tests.support import wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_LOST = "djtasks.exceptions.WorkerLostError"


def held(ids: list[str]) -> int:
    return TaskRecord.objects.filter(
        pk__in=ids, state__in=[states.RECEIVED, states.STARTED]
    ).count()


def test_warm_shutdown_finishes_running_tasks_and_returns_the_rest_at_once(
    worker: Any,
) -> None:
    with transaction.atomic():
        # Two long tasks first (priority), then short ones: the worker claims
        # all eight, runs the long ones, and holds the rest.
        long = [tasks.sleep.apply_async((3.0,), priority=10).id for _ in range(2)]
        short = [tasks.sleep.delay(0.1).id for _ in range(6)]
    ids = long + short
    w = worker(concurrency=2)
    wait_for_runs(2)  # both children are running a long task
    wait_until(
        lambda: not TaskRecord.objects.filter(state=states.PENDING).exists(),
        message="the worker to claim all 8 tasks",
    )

    w.terminate()
    # At once, not when the running tasks end: nothing is left RECEIVED and
    # the unstarted tasks are PENDING again while the long ones still run.
    wait_until(
        lambda: state_counts(ids).get(states.RECEIVED, 0) == 0,
        timeout=2.5,
        message="claimed rows to be released",
    )
    counts = state_counts(ids)
    assert counts.get(states.SUCCESS, 0) == 0, counts
    assert set(TaskRecord.objects.filter(pk__in=long).values_list("state", flat=True)) == {
        states.STARTED
    }
    returned = [
        str(i)
        for i in TaskRecord.objects.filter(pk__in=ids, state=states.PENDING).values_list(
            "id", flat=True
        )
    ]
    assert len(returned) >= 1, counts
    assert all(
        r.worker == "" and r.lease_expires is None
        for r in TaskRecord.objects.filter(pk__in=returned)
    )

    assert w.wait(timeout=15) == 0
    assert "warm shutdown (SIGTERM)" in w.log()
    finished = TaskRecord.objects.filter(pk__in=ids).exclude(pk__in=returned)
    assert set(finished.values_list("state", flat=True)) == {states.SUCCESS}
    assert set(finished.values_list("id", flat=True)) >= {uuid.UUID(i) for i in long}
    assert held(ids) == 0
    assert Execution.objects.filter(task_id__in=returned).count() == 0
    assert Worker.objects.get(pk=w.name).stopped_at is not None

    worker(concurrency=4, pool="threads")
    assert wait_until_finished(ids, timeout=20) == {states.SUCCESS: 8}
    assert Counter(Execution.objects.values_list("task_id", flat=True)) == dict.fromkeys(ids, 1)


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_second_signal_is_a_cold_shutdown_that_leaves_nothing_started(
    worker: Any, pool: str
) -> None:
    w = worker(concurrency=2, pool=pool)
    plain = tasks.sleep.delay(60)
    late = tasks.sleep_acks_late.delay(60)
    executions = wait_for_runs(2)

    w.terminate()
    w.wait_for_output("warm shutdown")
    w.terminate()
    assert w.wait(timeout=10) == 0
    assert "cold shutdown" in w.log()

    row = TaskRecord.objects.get(pk=plain.id)
    assert (row.state, row.exc_type) == (states.FAILURE, WORKER_LOST)
    assert f"worker {w.name} was stopped (cold shutdown)" in row.exc_message
    row = TaskRecord.objects.get(pk=late.id)  # acks_late: back in the queue, to run again
    assert (row.state, row.worker, row.lease_expires) == (states.PENDING, "", None)
    assert held([plain.id, late.id]) == 0
    if pool == "prefork":
        for run in executions:  # the children went with the worker
            wait_until(
                lambda pid=run.pid: not _alive(pid), timeout=5, message=f"child {run.pid} to exit"
            )


def test_a_killed_child_fails_its_task_and_the_worker_keeps_serving(worker: Any) -> None:
    w = worker(concurrency=2)
    doomed = tasks.sleep.delay(60)
    [run] = wait_for_runs(1)
    assert run.pid != w.pid

    os.kill(run.pid, signal.SIGKILL)
    wait_until_finished([doomed.id], timeout=10)
    row = TaskRecord.objects.get(pk=doomed.id)
    assert (row.state, row.exc_type) == (states.FAILURE, WORKER_LOST)
    assert "child process died (signal SIGKILL)" in row.exc_message

    results = [tasks.record.delay(i) for i in range(4)]
    assert [r.get(timeout=15) for r in results] == list(range(4))
    assert w.alive()
    assert len(runs(doomed.id)) == 1
    new_children = {e.pid for e in Execution.objects.exclude(task_id=doomed.id)}
    assert run.pid not in new_children


def test_tasks_of_a_crashed_worker_are_recovered_by_another(worker: Any) -> None:
    short_leases = {"DJTASKS_TEST_VISIBILITY_TIMEOUT": "2"}
    crashed = worker(concurrency=2, env=short_leases)
    lost = tasks.sleep.delay(60)
    again = tasks.hang_once.delay(60)
    wait_for_runs(2)

    crashed.crash()  # SIGKILL to the worker and its children: no goodbye
    assert held([lost.id, again.id]) == 2

    worker(concurrency=2, env=short_leases)
    # Its lease runs out: a started task fails, naming the worker it was lost
    # with; the acks_late one runs again.
    assert again.get(timeout=20) == 2
    wait_until_finished([lost.id], timeout=10)
    row = TaskRecord.objects.get(pk=lost.id)
    assert (row.state, row.exc_type) == (states.FAILURE, WORKER_LOST)
    assert row.exc_message == (
        f"worker {crashed.name} stopped (lease expired) while running this task"
    )
    assert len(runs(lost.id)) == 1  # not run twice
    assert len(runs(again.id)) == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
