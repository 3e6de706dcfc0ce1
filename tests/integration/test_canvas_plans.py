"""The canvas on a real database: plans written in one transaction, and the
worker side (what a finished step leaves behind) run in this process.

``drain()`` is a solo worker in the test's own process and transaction: it
claims, runs and settles rows through the same functions ``taskworker`` uses
(``queue.claim``, ``executor.execute``, ``queue.settle``) until nothing is
ready, so each workflow here is deterministic and fast. Real worker
processes are in ``tests/acceptance/test_canvas_workers.py``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from djtasks import AsyncResult, GroupResult, chain, chord, group, queue, states
from djtasks.canvas import ChordError, Signature
from djtasks.exceptions import TaskRevokedError
from djtasks.models import TaskGroup, TaskRecord
from djtasks.worker.executor import execute
from tests.conftest import on_postgres
from tests.support import in_other_connection
from tests.testapp.canvas_tasks import (
    collect,
    concat,
    error_handler,
    explode,
    log_error,
    mul,
    whoami,
    xsum,
)
from tests.testapp.models import Execution
from tests.testapp.tasks import BoomError, add, echo

pytestmark = pytest.mark.django_db

WORKER = "drain@test"


def drain(limit: int = 50, rounds: int = 100, now: dt.datetime | None = None) -> int:
    """Run every ready task here, as a solo worker would; return how many ran."""
    ran = 0
    for _ in range(rounds):
        at = now or timezone.now()
        claimed = queue.claim(WORKER, ["default"], limit, at, 30.0)
        if not claimed:
            return ran
        started = queue.start(WORKER, claimed, at)
        outcomes = [execute(c, WORKER) for c in claimed if c.id in started]
        queue.settle(outcomes, WORKER, [], now or timezone.now())
        ran += len(outcomes)
    raise AssertionError(f"still tasks to run after {rounds} rounds")


def rows() -> dict[str, TaskRecord]:
    return {str(r.id): r for r in TaskRecord.objects.all()}


def body_runs(task: Any = collect) -> int:
    return Execution.objects.filter(name=task.name).count()


# -- writing plans -------------------------------------------------------------------


def test_a_chain_writes_only_its_first_step_carrying_the_rest() -> None:
    res = chain(add.s(1, 1), add.s(2), mul.s(10)).apply_async()
    (row,) = TaskRecord.objects.all()
    assert str(row.id) == res.parent.parent.id
    assert [s["task"] for s in row.headers["chain"]] == [add.name, mul.name]
    assert [s["options"]["task_id"] for s in row.headers["chain"]] == [res.parent.id, res.id]


def test_a_group_writes_its_members_and_its_record_in_one_transaction() -> None:
    res = group(add.s(i, i) for i in range(5)).apply_async()
    record = TaskGroup.objects.get(pk=res.id)
    assert record.member_ids == [r.id for r in res.results]
    assert (record.size, record.remaining, record.body) == (5, 5, None)
    members = TaskRecord.objects.filter(pk__in=record.member_ids)
    assert {str(m.group_id) for m in members} == {res.id}
    assert sorted(m.headers["group_index"] for m in members) == [0, 1, 2, 3, 4]


def test_a_chord_writes_its_header_and_the_body_waits_in_the_group_record() -> None:
    res = chord([add.s(1, 1), add.s(2, 2)], xsum.s()).apply_async()
    assert TaskRecord.objects.count() == 2
    record = TaskGroup.objects.get()
    assert str(record.body_id) == res.id
    assert record.body["task"] == xsum.name
    assert all(m.headers["chord"] == str(record.id) for m in TaskRecord.objects.all())


def test_a_plan_that_fails_to_build_writes_nothing() -> None:
    with pytest.raises(TypeError, match="bad arguments"):
        group([add.s(1, 1), add.s(1, 2, 3)]).apply_async()
    assert TaskRecord.objects.count() == 0
    assert TaskGroup.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_workflow_called_in_a_rolled_back_transaction_leaves_nothing() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        chord([add.s(1, 1), add.s(2, 2)], xsum.s()).apply_async()
        group(add.s(1, 1), add.s(2, 2)).apply_async()
        raise RuntimeError("roll back")
    assert TaskRecord.objects.count() == 0
    assert TaskGroup.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_group_is_invisible_to_other_connections_until_commit() -> None:
    def seen() -> tuple[int, int]:
        return TaskRecord.objects.count(), TaskGroup.objects.count()

    with transaction.atomic():
        group(add.s(i, i) for i in range(3)).apply_async()
        if on_postgres():  # SQLite's single writer would block the reader's lock
            assert in_other_connection(seen) == (0, 0)
    assert in_other_connection(seen) == (3, 1)


# -- running them --------------------------------------------------------------------


def test_a_chain_passes_each_result_on() -> None:
    res = chain(add.s(4, 4), mul.s(8), mul.s(10)).apply_async()
    assert drain() == 3
    assert res.get() == 640
    assert res.parent.get() == 64
    assert res.parent.parent.get() == 8
    assert res.parent.parent.parent is None


def test_parent_walks_back_from_rows_alone() -> None:
    res = (add.s(2, 2) | add.s(4) | add.s(8)).apply_async()
    drain()
    fresh = AsyncResult(res.id)  # no in-memory links: read from the rows
    assert fresh.get() == 16
    assert fresh.parent.get() == 8
    assert fresh.parent.parent.get() == 4
    assert fresh.parent.parent.parent is None
    roots = {r.root_id for r in TaskRecord.objects.all()}
    assert roots == {TaskRecord.objects.order_by("created_at", "id").first().id}


def test_immutable_steps_ignore_the_previous_result() -> None:
    res = (add.si(2, 2) | add.si(4, 4) | add.si(8, 8)).apply_async()
    drain()
    assert (res.get(), res.parent.get(), res.parent.parent.get()) == (16, 8, 4)


def test_a_failed_step_stops_the_chain_and_the_rest_say_why() -> None:
    res = chain(add.s(1, 1), explode.s(), add.s(1), add.s(2)).apply_async()
    drain()
    assert res.parent.parent.state == states.FAILURE
    for skipped in (res, res.parent):
        assert skipped.state == states.REVOKED
        exc = skipped.result
        assert isinstance(exc, TaskRevokedError)
        assert res.parent.parent.id in str(exc) and "BoomError" in str(exc)
    with pytest.raises(TaskRevokedError):
        res.get()


def test_a_group_returns_results_in_order() -> None:
    res = group(add.s(i, i) for i in range(10)).apply_async()
    drain(limit=3)
    assert res.get() == [i + i for i in range(10)]
    assert res.ready() and res.successful() and not res.failed()
    assert res.completed_count() == 10


def test_group_result_restore_and_failures() -> None:
    res = group(add.s(1, 1), explode.s(), add.s(2, 2)).apply_async()
    restored = GroupResult.restore(res.id)
    assert restored is not None
    assert [r.id for r in restored] == [r.id for r in res]
    assert not restored.ready()
    assert restored.completed_count() == 0
    drain()
    assert restored.ready() and restored.failed() and not restored.successful()
    assert restored.completed_count() == 2
    with pytest.raises(BoomError):
        restored.get()
    assert restored.get(propagate=False)[0::2] == [2, 4]
    assert GroupResult.restore("01234567-89ab-7def-8123-456789abcdef") is None


def test_group_revoke_cancels_members_not_started() -> None:
    res = group(add.s(i, i) for i in range(3)).apply_async()
    res.revoke()
    assert [r.state for r in res] == [states.REVOKED] * 3
    assert drain() == 0


def test_a_chord_runs_its_body_once_with_the_results_in_order() -> None:
    res = chord([add.s(i, i) for i in range(20)], collect.s()).apply_async()
    drain(limit=7)
    assert res.get() == [i + i for i in range(20)]
    assert body_runs() == 1
    assert isinstance(res.parent, GroupResult)
    assert TaskGroup.objects.get().remaining == 0


def test_group_piped_into_a_task_is_a_chord() -> None:
    res = (group(add.s(i, i) for i in range(10)) | xsum.s())()
    drain()
    assert res.get() == 90


def test_a_failed_member_fails_the_chord_naming_it_and_the_body_never_runs() -> None:
    c = chord([add.s(4, 4), explode.s(), add.s(8, 8)], collect.s())
    res = c.apply_async()
    bad = res.parent.results[1]
    drain()
    assert res.state == states.FAILURE
    with pytest.raises(ChordError, match=bad.id):
        res.get()
    assert "BoomError" in str(res.result)
    assert body_runs() == 0


def test_link_and_link_error_take_one_or_a_list() -> None:
    ok = add.apply_async((2, 2), link=[add.s(8), mul.s(3)])
    bad = explode.apply_async((), link_error=error_handler.s())
    one = add.apply_async((1, 1), link=echo.s())
    drain()
    children = {r.name: r for r in TaskRecord.objects.filter(parent_id=ok.id)}
    assert AsyncResult(children[add.name].id).get() == 12
    assert AsyncResult(children[mul.name].id).get() == 12
    (errback,) = TaskRecord.objects.filter(parent_id=bad.id)
    assert AsyncResult(errback.id).get().startswith(f"{bad.id} raised BoomError(")
    (linked,) = TaskRecord.objects.filter(parent_id=one.id)
    assert AsyncResult(linked.id).get() == 2


def test_link_on_a_signature_and_on_error() -> None:
    sig = add.s(2, 2)
    sig.link(mul.s(10))
    res = sig.delay()
    boom = explode.s()
    boom.on_error(error_handler.s())
    bad = boom.delay()
    drain()
    (child,) = TaskRecord.objects.filter(parent_id=res.id)
    assert AsyncResult(child.id).get() == 40
    (errback,) = TaskRecord.objects.filter(parent_id=bad.id)
    assert bad.id in AsyncResult(errback.id).get()


def test_map_starmap_and_chunks() -> None:
    m = xsum.map([list(range(10)), list(range(100))]).apply_async()
    s = add.starmap(zip(range(10), range(10), strict=True)).apply_async()
    c = add.chunks(zip(range(10), range(10), strict=True), 3).apply_async()
    g = add.chunks(zip(range(4), range(4), strict=True), 2).group().apply_async()
    drain()
    assert m.get() == [45, 4950]
    assert s.get() == [i + i for i in range(10)]
    assert c.get() == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    assert g.get() == [[0, 2], [4, 6]]


# -- nested --------------------------------------------------------------------------


def test_a_chain_of_groups() -> None:
    # (1+1) -> each of +1, +2 -> [3, 4] -> each gets [3, 4] appended... -> concat
    res = chain(
        add.s(1, 1),
        group(add.s(1), add.s(2)),
        group(concat.s(), concat.s("x")),
        concat.s(),
    ).apply_async()
    drain()
    assert res.get() == [3, 4, 3, 4, "x"]


def test_a_chord_inside_a_chain() -> None:
    res = chain(add.s(1, 1), chord([add.s(10), add.s(20)], xsum.s()), mul.s(2)).apply_async()
    drain()
    assert res.get() == (12 + 22) * 2
    assert res.parent.get() == 34


def test_a_group_of_chains() -> None:
    res = group(chain(add.s(i, i), mul.s(10)) for i in range(4)).apply_async()
    drain()
    assert res.get() == [0, 20, 40, 60]


def test_a_chord_of_chains_with_a_chain_body() -> None:
    header = [add.s(i, 1) | mul.s(2) for i in range(5)]
    res = chord(header, xsum.s() | add.s(1000)).apply_async()
    drain()
    assert res.get() == sum((i + 1) * 2 for i in range(5)) + 1000


def test_a_failed_first_step_of_a_chord_member_still_ends_the_chord() -> None:
    header = [add.s(1, 1) | mul.s(2), explode.s() | mul.s(2)]
    res = chord(header, collect.s()).apply_async()
    drain()
    assert res.state == states.FAILURE
    assert isinstance(res.result, ChordError)
    assert body_runs() == 0


def test_every_row_of_a_workflow_shares_its_root() -> None:
    res = chain(
        whoami.s(), group(whoami.s(), whoami.s()), chord([whoami.s()], whoami.s()), whoami.s()
    ).apply_async()
    drain()
    assert res.successful()
    records = TaskRecord.objects.all()
    first = records.order_by("created_at", "id").first()
    assert Counter(str(r.root_id) for r in records) == {str(first.id): len(records)}


def test_outcome_not_applied_leaves_no_followups() -> None:
    """A late write from an older attempt (fenced off) must not enqueue the next step."""
    res = chain(add.s(1, 1), add.s(2)).apply_async()
    now = timezone.now()
    (first,) = queue.claim(WORKER, ["default"], 1, now, 30.0)
    queue.start(WORKER, [first], now)
    outcome = execute(first, WORKER)
    outcome.attempt += 1  # as if another worker had claimed it since
    queue.settle([outcome], WORKER, [], now)
    assert TaskRecord.objects.count() == 1
    assert res.state == states.PENDING


def test_a_signature_stored_in_the_database_round_trips() -> None:
    sig = chord([add.s(1, 1), echo.s(dt.date(2024, 1, 2))], xsum.s())
    stored = echo.delay(sig.to_dict())
    drain()
    back = Signature.from_dict(stored.get())
    assert back == sig
    assert back.header.tasks[1].args[0] == dt.date(2024, 1, 2)


# -- steps that end without running: revoked, expired, lost with their worker ----------


def test_revoking_a_chain_step_records_the_rest_as_not_run() -> None:
    res = chain(add.s(1, 1), add.s(2), add.s(3)).apply_async()
    first = res.parent.parent
    assert first.revoke()
    assert drain() == 0
    for later in (res.parent, res):
        assert later.state == states.REVOKED
        assert first.id in str(later.result)


def test_revoking_a_chord_member_fails_the_chord_instead_of_leaving_it_waiting() -> None:
    res = chord([add.s(1, 1), add.s(2, 2)], collect.s()).apply_async()
    member = res.parent.results[1]
    assert member.revoke()
    drain()
    assert res.state == states.FAILURE
    with pytest.raises(ChordError, match=member.id):
        res.get()
    assert body_runs() == 0


def test_a_workflow_step_lost_with_its_worker_fails_its_chain_chord_and_errbacks() -> None:
    lost_chain = chain(add.s(1, 1), add.s(2)).apply_async(link_error=error_handler.s())
    lost_chord = chord([add.s(1, 1), add.s(2, 2)], collect.s()).apply_async()
    t0 = timezone.now()
    claimed = queue.claim("dead@test", ["default"], 10, t0, 1.0)
    assert len(claimed) == 3
    queue.start("dead@test", claimed, t0)  # started, then the worker vanished
    rescued = queue.rescue_expired(t0 + dt.timedelta(seconds=5))
    assert rescued.lost == 3
    drain()
    assert lost_chain.parent.state == states.FAILURE
    assert lost_chain.state == states.REVOKED
    (errback,) = TaskRecord.objects.filter(parent_id=lost_chain.parent.id, name=error_handler.name)
    assert "WorkerLostError" in AsyncResult(errback.id).get()
    assert lost_chord.state == states.FAILURE
    assert isinstance(lost_chord.result, ChordError)
    assert body_runs() == 0


@pytest.mark.django_db(transaction=True)
def test_members_finishing_at_the_same_moment_enqueue_the_body_exactly_once() -> None:
    """Each member's outcome is written by its own connection, all released
    at once: the counter row serializes them, so one and only one sees zero."""
    import threading

    chords, size = 10, 4
    results = [
        chord([add.s(i, j) for j in range(size)], xsum.s()).apply_async() for i in range(chords)
    ]
    now = timezone.now()
    claimed = queue.claim(WORKER, ["default"], chords * size, now, 30.0)
    queue.start(WORKER, claimed, now)
    outcomes = [execute(c, WORKER) for c in claimed]
    by_chord: dict[str, list[Any]] = {}
    for o in outcomes:
        by_chord.setdefault(o.chord_id, []).append(o)
    for members in by_chord.values():
        barrier = threading.Barrier(len(members))

        def settle(o: Any, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            queue.settle([o], WORKER, [], timezone.now())

        threads = [
            threading.Thread(target=in_other_connection, args=(lambda o=o: settle(o),))
            for o in members
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    bodies = TaskRecord.objects.filter(name=xsum.name)
    assert Counter(str(b.id) for b in bodies) == {r.id: 1 for r in results}
    assert set(TaskGroup.objects.values_list("remaining", flat=True)) == {0}
    drain()
    assert [r.get() for r in results] == [sum(i + j for j in range(size)) for i in range(chords)]


# -- Celery-style error callbacks: (request, exc, traceback) ----------------------------


def test_a_celery_style_errback_is_called_in_the_worker_with_the_exception() -> None:
    bad = explode.apply_async(("x",), link_error=[log_error.s(), error_handler.s()])
    drain()
    (call,) = Execution.objects.filter(name__startswith="log_error")
    assert call.task_id == bad.id
    assert call.name == f"log_error {explode.name} BoomError: explode('x',) tb=True"
    # the id-style errback beside it is enqueued as usual; the other is not a row
    assert list(TaskRecord.objects.filter(parent_id=bad.id).values_list("name", flat=True)) == [
        error_handler.name
    ]


def test_a_celery_style_errback_of_a_chain_step() -> None:
    res = chain(add.s(1, 1), explode.s(), add.s(1)).on_error(log_error.s())
    assert res.task == log_error.name  # on_error returns the errback, as in Celery


def test_an_errback_with_the_wrong_arguments_is_refused_at_call_time() -> None:
    with pytest.raises(TypeError, match="bad arguments"):
        add.apply_async((1, 1), link_error=log_error.s(1))
    assert TaskRecord.objects.count() == 0


def lost_outcome(claimed: Any, state: str, exc_type: str, message: str) -> queue.Outcome:
    """An outcome made outside the executor, as the prefork pool makes one for
    a child that died, a hard time limit, or revoke(terminate=True)."""
    return queue.Outcome(
        claimed.id,
        claimed.attempt,
        state,
        timezone.now(),
        exc_type=exc_type,
        exc_message=message,
        task_name=claimed.name,
    )


@pytest.mark.parametrize(
    ("state", "exc_type"),
    [
        (states.FAILURE, "djtasks.exceptions.TimeLimitExceeded"),
        (states.FAILURE, "djtasks.exceptions.WorkerLostError"),
        (states.REVOKED, "djtasks.exceptions.TaskRevokedError"),
    ],
)
def test_a_step_ended_by_the_pool_settles_its_workflow(state: str, exc_type: str) -> None:
    ch = chain(add.s(1, 1), add.s(2)).apply_async(link_error=error_handler.s())
    cd = chord([add.s(1, 1), add.s(2, 2)], collect.s()).apply_async()
    now = timezone.now()
    claimed = queue.claim(WORKER, ["default"], 10, now, 30.0)
    queue.start(WORKER, claimed, now)
    queue.settle([lost_outcome(c, state, exc_type, "cut short") for c in claimed], WORKER, [], now)
    drain()
    assert ch.parent.state == state
    assert ch.state == states.REVOKED
    assert exc_type.rpartition(".")[2] in str(ch.result)
    errbacks = TaskRecord.objects.filter(name=error_handler.name)
    assert errbacks.count() == (1 if state == states.FAILURE else 0)
    assert cd.state == states.FAILURE
    assert isinstance(cd.result, ChordError)
    assert body_runs() == 0
