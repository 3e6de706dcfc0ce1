"""Scenario 11: tasks that try to take their process down with them.

``sys.exit()``, ``raise SystemExit(0)``, ``KeyboardInterrupt`` and
``GeneratorExit`` are exceptions: the task ends FAILURE naming them and the
process serves on, in every pool. ``os._exit()`` really ends the process: in
prefork the child is replaced and the task ends WorkerLostError, or, if
``acks_late``, is delivered again up to ``DJTASKS_MAX_REDELIVERIES`` times
and then fails; in the threads pool it ends the whole worker, and its
task is recovered by another worker once the lease runs out.
(``--max-memory-per-child`` is covered by
``tests/acceptance/test_runtime_limits.py``.)
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from djtasks import states
from djtasks.conf import settings
from djtasks.models import TaskRecord
from tests.acceptance.helpers import wait_until_finished
from tests.chaos.app import tasks
from tests.chaos.app.models import Effect
from tests.chaos.conftest import LEASE, report

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RAISED = {
    "sys.exit": ("builtins.SystemExit", "3"),
    "SystemExit(0)": ("builtins.SystemExit", "0"),
    "KeyboardInterrupt": ("builtins.KeyboardInterrupt", ""),
    "GeneratorExit": ("builtins.GeneratorExit", ""),
}
WORKER_LOST = "djtasks.exceptions.WorkerLostError"


def runs(task_id: str) -> int:
    row = Effect.objects.filter(task_id=task_id).first()
    return row.runs if row else 0


def test_prefork_survives_every_way_out(worker: Any) -> None:
    w = worker(concurrency=2)
    raised = {how: tasks.leave.delay(how).id for how in RAISED}
    raised_late = tasks.leave_late.delay("sys.exit").id
    exited = tasks.leave.delay("os._exit").id
    exited_late = tasks.leave_late.delay("os._exit").id
    ids = [*raised.values(), raised_late, exited, exited_late]
    assert wait_until_finished(ids, timeout=60) == {states.FAILURE: len(ids)}

    for how, task_id in raised.items():
        row = TaskRecord.objects.get(pk=task_id)
        assert (row.exc_type, row.exc_message) == RAISED[how], how
        assert how.partition("(")[0].rpartition(".")[2] in row.traceback
        assert runs(task_id) == 1
    row = TaskRecord.objects.get(pk=raised_late)  # raising is an outcome: not re-run
    assert (row.exc_type, runs(raised_late)) == ("builtins.SystemExit", 1)

    row = TaskRecord.objects.get(pk=exited)
    assert row.exc_type == WORKER_LOST
    assert "child process died (exit code 7)" in row.exc_message
    assert runs(exited) == 1
    row = TaskRecord.objects.get(pk=exited_late)  # delivered again, then given up
    assert (row.exc_type, row.attempt) == (WORKER_LOST, settings.MAX_REDELIVERIES)
    # Every delivery counts, even one spent waiting in the pipe of a child that
    # another task's os._exit took down: it ran once less then.
    assert settings.MAX_REDELIVERIES - 1 <= runs(exited_late) <= settings.MAX_REDELIVERIES

    # The children that exited were replaced; the worker never stopped.
    assert [tasks.effect.delay(i).get(timeout=20) for i in range(4)] == [0, 1, 2, 3]
    assert w.alive()
    assert len(re.findall(r"child process \d+ died \(exit code 7\)", w.log())) == (
        1 + runs(exited_late)
    )
    report(
        f"task exits (prefork): {len(RAISED) + 1} raised ways out FAILURE, os._exit "
        f"WorkerLostError; acks_late os._exit delivered {settings.MAX_REDELIVERIES} times "
        "then FAILURE; worker alive, children replaced"
    )


def test_threads_pool_survives_exceptions_and_os_exit_is_recovered_elsewhere(
    worker: Any, short_leases: dict[str, str]
) -> None:
    w = worker(concurrency=2, pool="threads", env=short_leases)
    raised = {how: tasks.leave.delay(how).id for how in RAISED}
    assert wait_until_finished(list(raised.values()), timeout=30) == {states.FAILURE: len(RAISED)}
    for how, task_id in raised.items():
        assert TaskRecord.objects.get(pk=task_id).exc_type == RAISED[how][0]
    assert tasks.effect.delay(1).get(timeout=20) == 1
    assert w.alive()

    # os._exit in a thread ends the worker process itself: nothing can catch
    # it. Its task is recovered by another worker when the lease runs out.
    fatal = tasks.leave.delay("os._exit").id
    assert w.wait(30) == 7
    rescuer = worker(concurrency=2, pool="threads", env=short_leases)
    wait_until_finished([fatal], timeout=LEASE * 5 + 20)
    row = TaskRecord.objects.get(pk=fatal)
    assert (row.state, row.exc_type) == (states.FAILURE, WORKER_LOST)
    assert f"worker {w.name} stopped (lease expired)" in row.exc_message
    assert runs(fatal) == 1
    assert rescuer.alive()
    report(
        "task exits (threads): raised ways out FAILURE in-process; os._exit ends the "
        "worker and its task is recovered as WorkerLostError by another"
    )
