"""The canvas with real ``taskworker`` processes: every primitive, nested
workflows, a 500-member chord over two workers, and a worker killed in the
middle of a workflow."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from django.db import transaction

from djtasks import AsyncResult, GroupResult, chain, chord, group, states
from djtasks.canvas import ChordError
from djtasks.exceptions import TaskRevokedError
from djtasks.models import TaskGroup, TaskRecord
from tests.support import wait_until
from tests.testapp.canvas_tasks import (
    collect,
    concat,
    error_handler,
    explode,
    log_error,
    mul,
    slow_square,
    square,
    xsum,
)
from tests.testapp.models import Execution
from tests.testapp.tasks import BoomError, add, echo, sleep

pytestmark = pytest.mark.django_db(transaction=True)

T = 30  # seconds a result may take


def runs_of(task: Any) -> Counter[str]:
    """Executions of ``task`` by task id."""
    return Counter(Execution.objects.filter(name=task.name).values_list("task_id", flat=True))


def test_each_primitive_on_a_real_worker(worker: Any) -> None:
    worker(concurrency=2)

    res = chain(add.s(4, 4), mul.s(8), mul.s(10))()
    grp = group(add.s(i, i) for i in range(10))()
    crd = chord((add.s(i, i) for i in range(10)), xsum.s())()
    piped = (group(add.s(i, i) for i in range(10)) | xsum.s()).delay()
    partial = (add.s(4) | mul.s(8))(16)
    immutable = (add.si(2, 2) | add.si(4, 4) | add.si(8, 8))()
    mapped = xsum.map([list(range(10)), list(range(100))]).delay()
    starmapped = add.starmap(zip(range(10), range(10), strict=True)).delay()
    chunked = add.chunks(zip(range(20), range(20), strict=True), 5)()
    linked = add.apply_async((2, 2), link=[mul.s(10), echo.s()])
    erred = explode.apply_async(("x",), link_error=error_handler.s())

    assert res.get(timeout=T) == 640
    assert (res.parent.get(timeout=T), res.parent.parent.get(timeout=T)) == (64, 8)
    assert AsyncResult(res.id).parent.parent.get(timeout=T) == 8  # walked back through the rows
    assert grp.get(timeout=T) == [i + i for i in range(10)]
    restored = GroupResult.restore(grp.id)
    assert restored is not None and restored.ready() and restored.successful()
    assert restored.completed_count() == 10
    assert crd.get(timeout=T) == 90
    assert piped.get(timeout=T) == 90
    assert partial.get(timeout=T) == 160
    assert immutable.get(timeout=T) == 16
    assert immutable.parent.get(timeout=T) == 8
    assert mapped.get(timeout=T) == [45, 4950]
    assert starmapped.get(timeout=T) == [i + i for i in range(10)]
    assert chunked.get(timeout=T) == [[2 * i for i in range(j, j + 5)] for j in range(0, 20, 5)]

    with pytest.raises(BoomError):
        erred.get(timeout=T)
    callbacks = lambda parent: wait_until(  # noqa: E731
        lambda: (rows := list(TaskRecord.objects.filter(parent_id=parent.id))) and rows
    )
    by_name = {r.name: r for r in callbacks(linked)}
    assert AsyncResult(by_name[mul.name].id).get(timeout=T) == 40
    assert AsyncResult(by_name[echo.name].id).get(timeout=T) == 4
    (errback,) = callbacks(erred)
    text = AsyncResult(errback.id).get(timeout=T)
    assert text.startswith(f"{erred.id} raised BoomError(")


def test_failures_stop_chains_and_fail_chords_on_a_real_worker(worker: Any) -> None:
    worker(concurrency=2)

    stopped = chain(add.s(1, 1), explode.s(), add.s(1), add.s(2))()
    failed_chord = chord([add.s(4, 4), explode.s(), add.s(8, 8)], collect.s())()
    handled = chord([add.s(1, 1), explode.s()], collect.s())
    handled.link_error(error_handler.s())
    handled_res = handled.delay()
    grp = group(add.s(1, 1), explode.s(), add.s(2, 2))()
    celery_style = explode.apply_async(("y",), link_error=log_error.s())
    # The prefork pool kills a member past its hard time limit: the chord still ends.
    timed_out = chord([add.s(1, 1), sleep.s(30).set(time_limit=0.5)], collect.s())()

    with pytest.raises(TaskRevokedError, match="BoomError"):
        stopped.get(timeout=T)
    assert stopped.parent.parent.state == states.FAILURE
    assert stopped.parent.state == states.REVOKED
    bad = failed_chord.parent.results[1]
    with pytest.raises(ChordError, match=bad.id):
        failed_chord.get(timeout=T)
    with pytest.raises(ChordError):
        handled_res.get(timeout=T)
    (errback,) = wait_until(
        lambda: list(TaskRecord.objects.filter(name=error_handler.name, state=states.SUCCESS))
    )
    assert AsyncResult(errback.id).result.startswith(f"{handled_res.id} raised ChordError(")
    assert grp.get(timeout=T, propagate=False)[0::2] == [2, 4]
    assert grp.ready() and grp.failed() and grp.completed_count() == 2
    with pytest.raises(ChordError, match="TimeLimitExceeded"):
        timed_out.get(timeout=T)
    assert runs_of(collect) == Counter()  # no failed chord ran its body
    (call,) = wait_until(
        lambda: list(Execution.objects.filter(task_id=celery_style.id)), message="log_error"
    )
    assert call.name == f"log_error {explode.name} BoomError: explode('y',) tb=True"


def test_nested_workflows_on_real_workers(worker: Any) -> None:
    worker(concurrency=2)
    worker(concurrency=2, pool="threads")

    chain_of_groups = chain(
        add.s(1, 1),
        group(add.s(1), add.s(2)),
        group(concat.s(), concat.s("x")),
        concat.s(),
    )()
    chord_in_chain = chain(add.s(1, 1), chord([add.s(10), add.s(20)], xsum.s()), mul.s(2))()
    group_of_chains = group(chain(add.s(i, i), mul.s(10)) for i in range(6))()
    chord_of_chains = chord([add.s(i, 1) | mul.s(2) for i in range(5)], xsum.s() | add.s(1000))()
    chord_of_chords = chord(
        [chord([add.s(i, i) for i in range(3)], xsum.s()), chord([add.s(9, 9)], xsum.s())],
        collect.s(),
    )()

    assert chain_of_groups.get(timeout=T) == [3, 4, 3, 4, "x"]
    assert chord_in_chain.get(timeout=T) == 68
    assert chord_in_chain.parent.get(timeout=T) == 34
    assert group_of_chains.get(timeout=T) == [i * 20 for i in range(6)]
    assert chord_of_chains.get(timeout=T) == sum((i + 1) * 2 for i in range(5)) + 1000
    assert chord_of_chords.get(timeout=T) == [6, 18]
    assert set(runs_of(collect).values()) == {1}

    # One root for every row of a workflow: the admin's workflow page reads it.
    root = TaskRecord.objects.get(pk=chord_in_chain.id).root_id
    rows = TaskRecord.objects.filter(root_id=root)
    assert sorted(rows.values_list("name", flat=True)) == sorted(
        [add.name, add.name, add.name, xsum.name, mul.name]
    )
    assert rows.get(pk=root).name == add.name
    assert set(rows.values_list("state", flat=True)) == {states.SUCCESS}


@pytest.mark.slow
def test_a_500_member_chord_over_two_workers_runs_its_body_once_in_order(worker: Any) -> None:
    members = 500
    worker(concurrency=2)
    worker(concurrency=2)
    started = time.monotonic()
    res = chord([square.s(i) for i in range(members)], collect.s())()
    assert res.get(timeout=120) == [i * i for i in range(members)]
    elapsed = time.monotonic() - started

    body = runs_of(collect)
    assert body == {res.id: 1}, body
    header = runs_of(square)
    assert len(header) == members and set(header.values()) == {1}
    group_row = TaskGroup.objects.get(pk=res.parent.id)
    assert (group_row.size, group_row.remaining, group_row.failed) == (members, 0, False)
    by_worker = Counter(
        TaskRecord.objects.filter(group_id=res.parent.id).values_list("worker", flat=True)
    )
    assert len(by_worker) == 2, by_worker  # both workers counted members down
    print(
        f"\n500-member chord: {elapsed:.2f}s from call to body result; "
        f"body executions: {body[res.id]}; members per worker: {sorted(by_worker.values())}"
    )


@pytest.mark.slow
def test_a_worker_killed_mid_workflow_and_the_workflow_still_completes(worker: Any) -> None:
    short_leases = {"DJTASKS_TEST_VISIBILITY_TIMEOUT": "2"}
    doomed = worker(concurrency=2, env=short_leases)
    members = 8
    with transaction.atomic():
        res = chain(chord([slow_square.s(i, 1.0) for i in range(members)], collect.s()), xsum.s())()

    # Kill the worker (and its pool) while two acks_late members are running.
    wait_until(lambda: runs_of(slow_square).total() >= 2, 20, message="members to start")
    doomed.crash()
    killed = set(runs_of(slow_square))
    assert TaskRecord.objects.filter(pk__in=killed, state=states.STARTED).count() == len(killed)

    rescuer = worker(concurrency=2, env=short_leases)
    assert res.get(timeout=60) == sum(i * i for i in range(members))
    body = runs_of(collect)
    assert list(body.values()) == [1]  # the chord's body ran exactly once
    header = runs_of(slow_square)
    assert len(header) == members
    assert all(header[tid] == 2 for tid in killed)  # acks_late: run again after the crash
    rows = TaskRecord.objects.filter(name=slow_square.name)
    assert set(rows.values_list("worker", flat=True)) == {rescuer.name}
    assert set(rows.values_list("state", flat=True)) == {states.SUCCESS}
