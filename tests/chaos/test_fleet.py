"""Scenarios 3 and 4: four real workers, thousands of tasks, with and without kill -9.

The verdict is the database's: every task row final, and the side table
(UNIQUE task id, written by each task) showing each effect once, except
the re-runs ``acks_late`` allows after a kill, which are counted.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from djtasks import states
from tests.chaos.app.models import Effect
from tests.chaos.conftest import LEASE, TASKS, report
from tests.chaos.fleet import RESTART_COMMAND, Faults, Fleet, Plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_four_workers_run_every_task_exactly_once(spawn: Any) -> None:
    run = Fleet(Plan(workers=4, tasks=TASKS, work=0.0, lease=LEASE), spawn).run()
    report(run.line())
    assert run.violations() == [], (run.line(), run.notes)
    assert run.states == {states.SUCCESS: TASKS}
    assert Effect.objects.count() == TASKS
    assert not Effect.objects.filter(runs__gt=1).exists()


def test_kill_9_every_few_seconds_loses_nothing(spawn: Any) -> None:
    faults = Faults(kill_every=(1.0, 2.5), kill_at=(0.3, 0.6), child_share=0.25)
    run = Fleet(
        Plan(workers=4, tasks=TASKS, work=0.004, lease=LEASE, faults=faults, seed=4), spawn
    ).run()
    report(run.line())
    assert run.violations() == [], (run.line(), run.notes)
    assert run.worker_kills + run.child_kills >= 2, "the run ended before any kill"


@pytest.mark.postgres
@pytest.mark.skipif(
    not (os.environ.get("CI") or os.environ.get(RESTART_COMMAND)),
    reason="restarts the PostgreSQL server: CI only, or a private server whose restart "
    f"command is in {RESTART_COMMAND} (docs/guarantees.md)",
)
def test_kill_9_and_a_postgresql_restart_lose_nothing(spawn: Any) -> None:
    faults = Faults(kill_every=(1.5, 3.0), kill_at=(0.3, 0.6), restart_postgres=True)
    run = Fleet(
        Plan(workers=4, tasks=TASKS, work=0.004, lease=LEASE, faults=faults, seed=5), spawn
    ).run()
    report(run.line())
    assert run.violations() == [], (run.line(), run.notes)
    assert run.restarts - run.external_restarts == 1
