"""Scenarios 1 and 2, the cases ``tests/acceptance/test_shutdown.py`` leaves out.

That file covers kill -9 of a worker (plain and ``acks_late``) and of a
prefork child, warm shutdown and the second signal. Here: a worker restarted
under the *same* name after a kill -9 (the usual ``--hostname worker1@%h``
under systemd), a warm shutdown cut short by the supervisor's SIGKILL after
its grace time, and the attempt count of every redelivery.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from djtasks import states
from djtasks.models import TaskRecord
from tests.acceptance.helpers import wait_until_finished
from tests.chaos.app import tasks
from tests.chaos.app.models import Effect
from tests.chaos.conftest import LEASE, report
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKER_LOST = "djtasks.exceptions.WorkerLostError"


def effect_runs(task_id: str) -> int:
    row = Effect.objects.filter(task_id=task_id).first()
    return row.runs if row else 0


def test_a_worker_restarted_under_the_same_name_still_recovers_what_it_held(
    worker: Any, short_leases: dict[str, str]
) -> None:
    name = "fixed@chaos"
    first = worker(concurrency=2, name=name, env=short_leases)
    plain = tasks.slow.delay(60)
    late = tasks.slow_late.delay(60)
    wait_until(lambda: Effect.objects.count() == 2, 20, message="both tasks to start")
    first.crash()
    crashed = time.monotonic()

    # The same name, as systemd would restart it: its heartbeat must not keep
    # the dead process's rows alive for ever.
    second = worker(concurrency=2, name=name, env=short_leases)
    wait_until_finished([plain.id], timeout=LEASE * 5 + 10)
    row = TaskRecord.objects.get(pk=plain.id)
    assert (row.state, row.exc_type) == (states.FAILURE, WORKER_LOST)
    wait_until(lambda: effect_runs(late.id) == 2, LEASE * 5 + 10, message="the acks_late re-run")
    assert TaskRecord.objects.get(pk=late.id).attempt == 2
    second.crash()  # rather than wait for the 60 s re-run at teardown
    report(f"same-name restart: recovered after {time.monotonic() - crashed:.1f}s (lease {LEASE}s)")


def test_a_warm_shutdown_cut_short_after_its_grace_time_leaves_nothing_stuck(
    worker: Any, short_leases: dict[str, str]
) -> None:
    w = worker(concurrency=2, env=short_leases)
    running = [tasks.slow.delay(60).id, tasks.slow_late.delay(60).id]
    waiting = [tasks.effect.delay(i).id for i in range(6)]
    wait_until(lambda: Effect.objects.count() == 2, 20, message="both slow tasks to start")
    w.terminate()
    w.wait_for_output("warm shutdown")
    time.sleep(1.0)  # the supervisor's grace time (systemd TimeoutStopSec), then:
    w.send_signal(signal.SIGKILL)
    w.wait(10)

    # Threads: a short task never waits behind the 60 s re-run in one child's pipe.
    rescuer = worker(concurrency=4, pool="threads", env=short_leases)
    wait_until_finished([running[0], *waiting], timeout=LEASE * 5 + 20)
    plain = TaskRecord.objects.get(pk=running[0])
    assert (plain.state, plain.exc_type) == (states.FAILURE, WORKER_LOST)
    assert f"worker {w.name} stopped (lease expired)" in plain.exc_message
    # The acks_late one runs again (and sleeps 60 s): it is back in a worker.
    wait_until(lambda: effect_runs(running[1]) == 2, LEASE * 5 + 10, message="the re-run")
    # The claimed rows went back at the SIGTERM and ran once. Up to one per
    # child had already been handed to the child's pipe (marked STARTED, not
    # yet running): those end WorkerLostError without having run (the known
    # cost of prefork's two-deep pipes; docs/guarantees.md).
    rows = TaskRecord.objects.filter(pk__in=waiting)
    ran = set(Effect.objects.filter(task_id__in=waiting).values_list("task_id", flat=True))
    assert not Effect.objects.filter(task_id__in=waiting, runs__gt=1).exists()
    for row in rows:
        if row.state == states.SUCCESS:
            assert str(row.id) in ran
        else:
            assert (row.state, row.exc_type) == (states.FAILURE, WORKER_LOST)
            assert str(row.id) not in ran
    lost = rows.filter(state=states.FAILURE).count()
    assert lost <= 2
    rescuer.crash()  # rather than wait for the 60 s re-run at teardown
    report(
        f"warm shutdown cut short by SIGKILL: {len(waiting) - lost} waiting tasks re-run, "
        f"{lost} handed to a child's pipe ended WorkerLostError unrun"
    )
