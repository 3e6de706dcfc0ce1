"""Scenario 5: zombie completion.

A worker frozen (SIGSTOP, as a paused VM or a long GC pause would) past its
lease loses its rows: another worker fails the plain task (WorkerLostError)
and runs the ``acks_late`` one again. When the frozen worker thaws and
finishes both, its writes carry the old attempt number and are refused: each
row's final state is written once, by the rules, never overwritten late.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from djtasks import states
from djtasks.models import TaskRecord
from tests.chaos.app import tasks
from tests.chaos.app.models import Effect
from tests.chaos.conftest import LEASE, report
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKER_LOST = "djtasks.exceptions.WorkerLostError"


def runs(task_id: str) -> int:
    row = Effect.objects.filter(task_id=task_id).first()
    return row.runs if row else 0


def test_a_thawed_worker_cannot_overwrite_what_happened_while_it_was_frozen(
    worker: Any, short_leases: dict[str, str]
) -> None:
    frozen = worker(concurrency=2, env=short_leases)
    plain = tasks.slow.delay(3.0)
    late = tasks.slow_late.delay(3.0)
    wait_until(lambda: runs(plain.id) and runs(late.id), 20, message="both tasks to start")
    os.killpg(frozen.pid, signal.SIGSTOP)  # the worker and its children
    stopped = time.monotonic()
    try:
        rescuer = worker(concurrency=2, env=short_leases)
        # Its lease runs out; the other worker fails the plain task and runs the
        # acks_late one again (attempt 2).
        wait_until(lambda: runs(late.id) == 2, LEASE * 5 + 15, message="the re-run")
        lost = TaskRecord.objects.get(pk=plain.id)
        assert (lost.state, lost.exc_type) == (states.FAILURE, WORKER_LOST)
        assert frozen.name in lost.exc_message
        rerun = TaskRecord.objects.get(pk=late.id)
        assert (rerun.state, rerun.attempt, rerun.worker) == (states.STARTED, 2, rescuer.name)
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
    frozen_for = time.monotonic() - stopped

    # The thawed worker finishes both runs (about 2.5 s left of each) and
    # writes their SUCCESS under attempt 1, while the re-run is still going.
    frozen.wait_for_output(f"chaos.slow[{plain.id}] SUCCESS", timeout=15)
    frozen.wait_for_output(f"chaos.slow_late[{late.id}] SUCCESS", timeout=15)
    refused_while_rerunning = TaskRecord.objects.get(pk=late.id).state == states.STARTED
    after = TaskRecord.objects.get(pk=plain.id)
    assert (after.state, after.exc_type, after.done_at, after.result) == (
        states.FAILURE,
        WORKER_LOST,
        lost.done_at,
        None,
    )

    assert late.get(timeout=20) == {
        "attempt": 2,
        "pid": late.result["pid"],
        "hostname": rescuer.name,
    }
    row = TaskRecord.objects.get(pk=late.id)
    assert (row.state, row.attempt, row.worker) == (states.SUCCESS, 2, rescuer.name)
    assert (runs(plain.id), runs(late.id)) == (1, 2)
    # Both workers go on serving and stop cleanly.
    assert [tasks.effect.delay(i).get(timeout=20) for i in range(4)] == [0, 1, 2, 3]
    frozen.terminate()
    assert frozen.wait(20) == 0
    report(
        f"zombie: frozen {frozen_for:.1f}s (lease {LEASE}s); its late writes refused "
        f"(re-run still running when refused: {refused_while_rerunning}); final states "
        "written once"
    )
