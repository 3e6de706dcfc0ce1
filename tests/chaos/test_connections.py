"""Scenario 9: database sessions cut under a worker and a beat.

``tests/acceptance/test_connections.py`` drops an idle worker's sessions
once. Here (PostgreSQL) every session of the worker, its children, its
LISTEN connection and three beats is terminated again and again while tasks
flow (idle moments, claims, settles, and tasks in the middle of their own
queries); afterwards nothing is stuck, each outcome was written once, no
tick was sent twice, and both go on working. Then, on both databases, the
window pg_terminate_backend() rarely hits is hit on purpose: a claim and a
settle whose commit succeeded but whose reply was lost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from django.db import connection, connections

from djtasks import states
from djtasks.models import PeriodicTask, TaskRecord
from tests.acceptance.helpers import wait_until_finished
from tests.chaos.app import tasks
from tests.chaos.app.models import Effect
from tests.chaos.conftest import LEASE, report
from tests.chaos.fleet import DB_ERRORS
from tests.conftest import on_postgres
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def cut_every_session(spare: int) -> int:
    """Terminate every session of the test database but this one and ``spare``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s "
            "AND backend_type = 'client backend'",
            [spare],
        )
        return int(cursor.fetchone()[0])


def tick_duplicates() -> int:
    counts = Counter(
        (h["periodic_task"], h["due"])
        for h in TaskRecord.objects.values_list("headers", flat=True)
        if "periodic_task" in h
    )
    return sum(n - 1 for n in counts.values())


@pytest.mark.postgres
def test_sessions_cut_again_and_again_under_a_worker_and_beats(
    worker: Any, manage_py: Any, short_leases: dict[str, str]
) -> None:
    PeriodicTask.objects.create(
        name="every-second", task="chaos.effect", args=[0], every=1, period="seconds"
    )
    w = worker(concurrency=2, env=short_leases)
    beats = [
        manage_py(
            ["taskbeat", "--hostname", f"beat-{i}"],
            label=f"beat-{i}",
            env={"DJTASKS_TEST_BEAT_LEASE": "2"},
        )
        for i in range(3)
    ]
    for b in beats:
        b.wait_for_output("beat: Starting", timeout=30)
    ids = [tasks.db_work.delay(0.3).id for _ in range(30)]
    ids += [r.id for r in tasks.effect.bulk_delay([(i,) for i in range(1, 301)])]

    stop = threading.Event()
    cuts: Counter[str] = Counter()
    test_session = backend_pid()

    def terminator() -> None:
        try:
            while not stop.wait(0.7):
                cuts["rounds"] += 1
                cuts["sessions"] += cut_every_session(test_session)
        finally:
            connections.close_all()

    thread = threading.Thread(target=terminator)
    thread.start()
    try:
        time.sleep(6)  # busy at first, then idle: both get cut
    finally:
        stop.set()
        thread.join(10)

    # Every task ends, and ends once: a task whose own query was cut fails
    # saying so; no plain task ran twice (UNIQUE effect).
    counts = wait_until_finished(ids, timeout=LEASE * 5 + 30)
    failures = Counter(
        TaskRecord.objects.filter(pk__in=ids, state=states.FAILURE).values_list("name", "exc_type")
    )
    assert {t for _, t in failures} <= set(DB_ERRORS), failures
    succeeded = {
        str(i)
        for i in TaskRecord.objects.filter(pk__in=ids, state=states.SUCCESS).values_list(
            "id", flat=True
        )
    }
    effects = set(Effect.objects.filter(task_id__in=ids).values_list("task_id", flat=True))
    assert succeeded <= effects
    assert not Effect.objects.filter(runs__gt=1).exists()

    # Both recovered: new tasks run, ticks go on, none twice.
    assert tasks.effect.delay(999).get(timeout=30) == 999
    ticks_before = TaskRecord.objects.filter(name="chaos.effect", headers__has_key="due").count()
    wait_until(
        lambda: (
            TaskRecord.objects.filter(name="chaos.effect", headers__has_key="due").count()
            >= ticks_before + 2
        ),
        20,
        message="beat to tick again",
    )
    assert tick_duplicates() == 0
    assert w.alive() and all(b.alive() for b in beats)
    assert "retrying in" in w.log()  # it backed off and reconnected
    failed = {
        f"{name} {exc_type.rpartition('.')[2]}": n for (name, exc_type), n in failures.items()
    }
    report(
        f"sessions cut (postgresql): {cuts['rounds']} rounds, {cuts['sessions']} sessions "
        f"terminated under 1 worker + 3 beats; {len(ids)} tasks: {counts}, failures "
        f"{failed}; duplicates 0; both recovered"
    )


def test_a_claim_and_a_settle_whose_replies_were_lost(worker: Any) -> None:
    w = worker(
        concurrency=2,
        env={
            "DJTASKS_TEST_VISIBILITY_TIMEOUT": str(LEASE),
            "DJTASKS_CHAOS_FAULTS": "claim:1,settle:2",
        },
    )
    plain = [tasks.effect.delay(i).id for i in range(10)]
    late = [tasks.effect_late.delay(i).id for i in range(10)]
    counts = wait_until_finished(plain + late, timeout=LEASE * 5 + 30)
    assert counts == {states.SUCCESS: 20}, counts
    assert Effect.objects.filter(task_id__in=plain + late).count() == 20
    assert not Effect.objects.filter(runs__gt=1).exists()
    log = w.log()
    assert log.count("chaos: dropping the reply of a committed claim") == 1
    assert log.count("chaos: dropping the reply of a committed settle") == 2
    redelivered = TaskRecord.objects.filter(pk__in=plain + late, attempt__gt=1).count()
    report(
        f"lost replies ({'postgresql' if on_postgres() else 'sqlite'}): 1 claim + 2 settles "
        f"committed without an answer; 20/20 SUCCESS once, {redelivered} redelivered, "
        "none stuck"
    )
