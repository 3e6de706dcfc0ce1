"""Real workers deliver every task exactly once, in every pool."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from django.db import transaction

from djtasks import AsyncResult, serialization, states
from djtasks.models import TaskRecord, Worker
from tests.acceptance.helpers import wait_until_finished
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = 500


@pytest.mark.slow
def test_500_tasks_over_two_workers_all_succeed_exactly_once(worker: Any) -> None:
    first = worker(concurrency=2)
    second = worker(concurrency=2)
    with transaction.atomic():
        ids = [tasks.record.delay(i).id for i in range(TASKS)]

    counts = wait_until_finished(ids, timeout=150)
    assert counts == {states.SUCCESS: TASKS}

    executions = Counter(Execution.objects.values_list("task_id", flat=True))
    duplicates = {tid: n for tid, n in executions.items() if n > 1}
    assert duplicates == {}, f"{len(duplicates)} tasks ran more than once"
    assert set(executions) == set(ids)

    rows = TaskRecord.objects.filter(pk__in=ids)
    assert set(rows.values_list("attempt", flat=True)) == {1}  # nobody claimed a row twice
    by_worker = Counter(rows.values_list("worker", flat=True))
    assert set(by_worker) == {first.name, second.name}, by_worker
    results = {
        str(pk): serialization.decode(ct, text)
        for pk, ct, text in rows.values_list("id", "result_content_type", "result")
    }
    assert results == {tid: i for i, tid in enumerate(ids)}
    assert all(
        r.started_at and r.done_at and r.runtime is not None
        for r in rows.only("started_at", "done_at", "runtime")
    )
    assert first.alive()
    assert second.alive()


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_each_pool_runs_tasks(worker: Any, pool: str) -> None:
    w = worker(concurrency=2, pool=pool)
    sums = [tasks.add.delay(i, i) for i in range(6)]
    where = tasks.where.delay()
    assert [r.get(timeout=20) for r in sums] == [2 * i for i in range(6)]
    ran = where.get(timeout=20)
    if pool == "prefork":
        assert ran["pid"] != w.pid  # a child process
    else:
        assert ran["pid"] == w.pid
        assert (
            ran["thread"].startswith("djtasks-")
            if pool == "threads"
            else (ran["thread"] == "MainThread")
        )
    assert AsyncResult(where.id).worker == w.name
    row = Worker.objects.get(pk=w.name)
    concurrency = 1 if pool == "solo" else 2  # solo runs one task at a time, whatever -c says
    assert (row.pool, row.concurrency, row.pid, row.queues) == (
        pool,
        concurrency,
        w.pid,
        ["default"],
    )


def test_a_worker_serves_only_its_queues(worker: Any) -> None:
    worker(concurrency=1, pool="threads", queues=("mail", "default"))
    mail = tasks.add.apply_async((1, 1), queue="mail")
    elsewhere = tasks.add.apply_async((2, 2), queue="reports")
    assert mail.get(timeout=20) == 2
    assert tasks.add.delay(3, 3).get(timeout=20) == 6
    assert elsewhere.state == states.PENDING


def test_values_round_trip_through_a_worker(worker: Any) -> None:
    import datetime as dt
    import decimal
    import uuid

    worker(concurrency=1, pool="prefork")
    value = {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2024, 1, 2),
        "at": dt.time(4, 5),
        "amount": decimal.Decimal("10.01"),
        "id": uuid.UUID(int=7),
        "raw": b"\x00\x01",
        "tags": {"a", "b"},
        "pairs": {(1, 2)},
    }
    assert tasks.echo.delay(value).get(timeout=20) == value


def test_the_worker_logs_one_line_per_task(worker: Any) -> None:
    w = worker(concurrency=1, pool="solo")
    ok = tasks.add.delay(1, 2)
    bad = tasks.fail.delay("logged")
    ok.get(timeout=20)
    bad.get(timeout=20, propagate=False)
    w.wait_for_output(f"tests.testapp.tasks.fail[{bad.id}] FAILURE")
    log = w.log()
    assert f"tests.testapp.tasks.add[{ok.id}] SUCCESS in " in log
    assert f"tests.testapp.tasks.fail[{bad.id}] FAILURE in " in log
    assert "tests.testapp.tasks.BoomError: logged" in log
    assert log.count(ok.id) == 1


def test_max_tasks_per_child_replaces_children_without_losing_tasks(worker: Any) -> None:
    w = worker(concurrency=2, args=["--max-tasks-per-child", "2"])
    with transaction.atomic():
        results = [tasks.where.delay() for _ in range(30)]
    pids = Counter(r.get(timeout=30)["pid"] for r in results)
    assert max(pids.values()) <= 2, pids
    assert len(pids) >= 15
    assert w.pid not in pids
