"""queue.py on a real database: enqueue, claim, start, leases, rescue, fencing, revoke.

Every function takes ``now`` from its caller, so these tests move the clock
instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from djtasks import AsyncResult, queue, states
from djtasks.ids import uuid7
from djtasks.models import TaskRecord
from djtasks.queue import connection
from tests.conftest import on_postgres
from tests.support import in_other_connection
from tests.testapp import tasks

T0 = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
LEASE = 30.0


def put(
    priority: int = 0,
    eta: dt.datetime = T0,
    queue_name: str = "default",
    acks_late: bool = False,
    expires: dt.datetime | None = None,
    task_id: uuid.UUID | None = None,
    name: str = "tests.testapp.tasks.add",
) -> str:
    """Enqueue one row directly; return its id."""
    tid = task_id or uuid7()
    queue.enqueue(
        [
            queue.Message(
                id=tid,
                name=name,
                queue=queue_name,
                priority=priority,
                content_type="application/json",
                payload="[[1, 2], {}]",
                eta=eta,
                created_at=T0,
                acks_late=acks_late,
                expires=expires,
            )
        ]
    )
    return str(tid)


def row(task_id: str) -> TaskRecord:
    return TaskRecord.objects.get(pk=task_id)


def claim(
    worker: str = "w1",
    limit: int = 10,
    now: dt.datetime = T0,
    queues: tuple[str, ...] = ("default",),
) -> list[queue.Claimed]:
    return queue.claim(worker, queues, limit, now, LEASE)


def claim_and_start(
    worker: str = "w1", now: dt.datetime = T0, queues: tuple[str, ...] = ("default",)
) -> list[queue.Claimed]:
    claimed = claim(worker, now=now, queues=queues)
    assert queue.start(worker, claimed, now) == {c.id for c in claimed}
    return claimed


def success(c: queue.Claimed, value: str = "3", attempt: int | None = None) -> queue.Outcome:
    return queue.Outcome(
        c.id,
        c.attempt if attempt is None else attempt,
        states.SUCCESS,
        T0,
        runtime=0.01,
        result=value,
        result_content_type="application/json",
    )


# -- enqueue -----------------------------------------------------------------------


@pytest.mark.django_db
def test_enqueue_writes_a_pending_row_with_the_message() -> None:
    eta = T0 + dt.timedelta(seconds=5)
    tid = put(
        priority=7, eta=eta, queue_name="mail", acks_late=True, expires=T0 + dt.timedelta(hours=1)
    )
    r = row(tid)
    assert (r.state, r.name, r.queue, r.priority) == (
        states.PENDING,
        "tests.testapp.tasks.add",
        "mail",
        7,
    )
    assert (r.eta, r.expires, r.acks_late, r.retries, r.attempt) == (
        eta,
        T0 + dt.timedelta(hours=1),
        True,
        0,
        0,
    )
    assert (r.payload, r.content_type, r.worker, r.lease_expires) == (
        "[[1, 2], {}]",
        "application/json",
        "",
        None,
    )


@pytest.mark.django_db
def test_enqueue_many_inserts_every_message() -> None:
    messages = [
        queue.Message(
            id=uuid7(),
            name="t",
            queue=f"q{i % 3}",
            priority=i % 7,
            content_type="application/json",
            payload=f"[[{i}], {{}}]",
            eta=T0,
            created_at=T0,
        )
        for i in range(50)
    ]
    queue.enqueue(messages)
    stored = {str(r.id): r for r in TaskRecord.objects.all()}
    assert set(stored) == {str(m.id) for m in messages}
    for m in messages:
        r = stored[str(m.id)]
        assert (r.queue, r.priority, r.payload, r.state) == (
            m.queue,
            m.priority,
            m.payload,
            states.PENDING,
        )


# -- claim -------------------------------------------------------------------------


@pytest.mark.django_db
def test_claim_order_is_priority_then_eta_then_id() -> None:
    s = dt.timedelta(seconds=1)
    a = put(priority=0, eta=T0 - 10 * s, task_id=uuid.UUID(int=2))
    b = put(priority=5, eta=T0 - 1 * s)
    c = put(priority=5, eta=T0 - 5 * s)
    d = put(priority=0, eta=T0 - 10 * s, task_id=uuid.UUID(int=1))
    e = put(priority=-1, eta=T0 - 100 * s)
    retry = put(priority=0, eta=T0 - 20 * s)
    TaskRecord.objects.filter(pk=retry).update(state=states.RETRY)
    put(priority=100, eta=T0 + s)  # not due yet
    put(priority=100, queue_name="other")  # another queue
    held = put(priority=100)
    TaskRecord.objects.filter(pk=held).update(state=states.RECEIVED)
    done = put(priority=100)
    TaskRecord.objects.filter(pk=done).update(state=states.SUCCESS)

    # The limit takes the first rows in claim order, not any three.
    assert [x.id for x in claim(limit=3)] == [c, b, retry]
    assert [x.id for x in claim(limit=10)] == [d, a, e]
    assert claim(limit=10) == []


@pytest.mark.django_db
def test_claim_marks_rows_received_with_a_lease() -> None:
    tid = put(priority=3)
    [c] = claim("worker-a")
    assert (c.id, c.name, c.queue, c.priority, c.attempt, c.retries) == (
        tid,
        "tests.testapp.tasks.add",
        "default",
        3,
        1,
        0,
    )
    assert (c.content_type, c.payload, c.expired) == ("application/json", "[[1, 2], {}]", False)
    r = row(tid)
    assert (r.state, r.worker, r.attempt) == (states.RECEIVED, "worker-a", 1)
    assert r.received_at == T0
    assert r.lease_expires == T0 + dt.timedelta(seconds=LEASE)


@pytest.mark.django_db
def test_claim_serves_only_the_given_queues() -> None:
    a = put(queue_name="a")
    b = put(queue_name="b")
    put(queue_name="c")
    assert sorted(x.id for x in claim(queues=("a", "b"))) == sorted([a, b])
    assert claim(queues=()) == []
    assert queue.claim("w", ["c"], 0, T0, LEASE) == []


@pytest.mark.django_db
def test_claim_flags_rows_past_their_expiry() -> None:
    late = put(expires=T0 - dt.timedelta(seconds=1))
    fine = put(expires=T0 + dt.timedelta(seconds=1))
    claimed = {c.id: c.expired for c in claim()}
    assert claimed == {late: True, fine: False}


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_never_get_the_same_row() -> None:
    ids = {put() for _ in range(120)}
    got: list[list[str]] = []

    def drain(name: str) -> list[str]:
        mine: list[str] = []
        while batch := queue.claim(name, ["default"], 5, T0, LEASE):
            mine.extend(c.id for c in batch)
        return mine

    threads = [
        threading.Thread(target=lambda n=n: got.append(in_other_connection(lambda: drain(f"w{n}"))))
        for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [i for batch in got for i in batch]
    assert len(got) == 4
    assert sorted(claimed) == sorted(ids)  # every row once, none twice
    assert TaskRecord.objects.filter(state=states.RECEIVED, attempt=1).count() == 120


@contextmanager
def row_locked_elsewhere(task_id: str) -> Iterator[None]:
    """Hold ``SELECT ... FOR UPDATE`` on one row from another connection."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            list(TaskRecord.objects.select_for_update().filter(pk=task_id))
            locked.set()
            release.wait(30)

    thread = threading.Thread(target=lambda: in_other_connection(hold))
    thread.start()
    try:
        assert locked.wait(10), "the other connection never took the lock"
        yield
    finally:
        release.set()
        thread.join(30)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_claim_skips_a_row_locked_by_another_connection_without_waiting() -> None:
    first = put(priority=10)
    second = put(priority=0)
    with row_locked_elsewhere(first):
        started = time.monotonic()
        claimed = claim(limit=2)
        elapsed = time.monotonic() - started
        assert [c.id for c in claimed] == [second]
        # Waiting would take the 30 s the other connection holds the lock.
        assert elapsed < 5.0, f"claim waited {elapsed:.2f}s on the lock"
    assert [c.id for c in claim(limit=2)] == [first]


# -- start, release ------------------------------------------------------------------


@pytest.mark.django_db
def test_start_marks_only_this_workers_received_rows() -> None:
    put()
    put()
    mine, theirs = claim("w1", limit=1), claim("w2", limit=1)
    assert queue.start("w1", mine + theirs, T0) == {mine[0].id}
    assert row(mine[0].id).state == states.STARTED
    assert row(mine[0].id).started_at == T0
    assert row(theirs[0].id).state == states.RECEIVED
    assert queue.start("w1", mine, T0) == set()  # already started


@pytest.mark.django_db
def test_a_row_revoked_after_its_claim_is_not_started() -> None:
    put()
    claimed = claim()
    assert AsyncResult(claimed[0].id).revoke() is True
    assert queue.start("w1", claimed, T0) == set()
    assert row(claimed[0].id).state == states.REVOKED


@pytest.mark.django_db
def test_a_claim_starts_the_rows_its_free_slots_take_at_once() -> None:
    best = put(priority=5)
    late = put(priority=4, expires=T0 - dt.timedelta(seconds=1))
    rest = [put(eta=T0 - dt.timedelta(seconds=9 - i)) for i in range(3)]  # in this order
    claimed = queue.claim("w1", ["default"], 4, T0, LEASE, start=2)
    # The best two would start, but one has expired: it waits, RECEIVED, for
    # the worker to revoke it; the third-best is not moved up in its place.
    assert [(c.id, c.started, c.expired) for c in claimed] == [
        (best, True, False),
        (late, False, True),
        (rest[0], False, False),
        (rest[1], False, False),
    ]
    r = row(best)
    assert (r.state, r.started_at, r.received_at, r.attempt) == (states.STARTED, T0, T0, 1)
    assert [row(i).state for i in (late, *rest)] == [
        states.RECEIVED,
        states.RECEIVED,
        states.RECEIVED,
        states.PENDING,
    ]


@pytest.mark.django_db
def test_a_turn_writes_outcomes_starts_buffered_rows_and_claims_in_one_go() -> None:
    ids = [put(eta=T0 - dt.timedelta(seconds=9 - i)) for i in range(6)]  # claimed in this order
    first = queue.turn([], "w1", [], T0, ["default"], 3, 1, LEASE)
    assert first.started == set()
    running, *buffered = first.claimed
    assert [c.id for c in first.claimed] == ids[:3]
    assert [c.started for c in first.claimed] == [True, False, False]
    second = queue.turn([success(running)], "w1", buffered[:1], T0, ["default"], 2, 1, LEASE)
    assert second.started == {buffered[0].id}
    assert [(c.id, c.started) for c in second.claimed] == [(ids[3], True), (ids[4], False)]
    assert [row(i).state for i in ids] == [
        states.SUCCESS,
        states.STARTED,
        states.RECEIVED,
        states.STARTED,
        states.RECEIVED,
        states.PENDING,
    ]
    # Nothing to do is no statement at all.
    assert queue.turn([], "w1", [], T0) == queue.Turn(set(), [])


@pytest.mark.django_db
def test_orphans_of_a_lost_reply_go_back_but_known_and_older_rows_stay() -> None:
    older, known, orphan = (put(eta=T0 - dt.timedelta(seconds=9 - i)) for i in range(3))
    # Held by a process that had the same name before this one started.
    queue.claim("w1", ["default"], 1, T0, LEASE, start=1)
    born = T0 + dt.timedelta(seconds=5)
    claimed = queue.claim("w1", ["default"], 2, born, LEASE, start=2)
    assert [c.id for c in claimed] == [known, orphan]
    assert queue.requeue_orphans("w1", born, [known]) == 1
    r = row(orphan)
    assert (r.state, r.worker, r.started_at, r.lease_expires) == (states.PENDING, "", None, None)
    assert row(known).state == states.STARTED
    assert row(older).state == states.STARTED  # its lease decides (WorkerLostError)
    assert queue.requeue_orphans("w2", born, []) == 0


@pytest.mark.django_db
def test_release_puts_unstarted_rows_back_at_once() -> None:
    put()
    put()
    unstarted, started = claim(limit=2)
    queue.start("w1", [started], T0)
    assert queue.release("w1", [unstarted, started]) == 1
    r = row(unstarted.id)
    assert (r.state, r.worker, r.lease_expires, r.received_at) == (states.PENDING, "", None, None)
    assert row(started.id).state == states.STARTED
    assert [c.id for c in claim("w2")] == [unstarted.id]  # claimable again, attempt 2
    assert row(unstarted.id).attempt == 2


# -- leases and rescue ----------------------------------------------------------------


@pytest.mark.django_db
def test_renew_extends_only_this_workers_held_rows() -> None:
    put()
    put()
    put()
    mine, other = claim("w1", limit=1), claim("w2", limit=1)
    done = claim("w1", limit=1)
    queue.complete([success(done[0])])
    later = T0 + dt.timedelta(seconds=20)
    assert queue.renew_leases("w1", later, LEASE) == 1
    assert row(mine[0].id).lease_expires == later + dt.timedelta(seconds=LEASE)
    assert row(other[0].id).lease_expires == T0 + dt.timedelta(seconds=LEASE)
    assert row(done[0].id).lease_expires is None


@pytest.mark.django_db
def test_rescue_recovers_each_kind_of_expired_row_by_the_rules() -> None:
    received = put()
    claim("dead-worker", limit=1)
    started = put(queue_name="s")
    claim_and_start("dead-worker", queues=("s",))
    late = put(queue_name="late", acks_late=True)
    claim_and_start("dead-worker", queues=("late",))
    alive = put(queue_name="alive")
    claim_and_start("live-worker", now=T0 + dt.timedelta(seconds=20), queues=("alive",))

    # Not yet expired: nothing happens.
    assert queue.rescue_expired(T0 + dt.timedelta(seconds=LEASE - 1)) == queue.Rescued(0, 0)

    after = T0 + dt.timedelta(seconds=LEASE + 1)
    assert queue.rescue_expired(after) == queue.Rescued(requeued=2, lost=1)

    r = row(received)  # never started: back in the queue
    assert (r.state, r.worker, r.lease_expires, r.received_at) == (states.PENDING, "", None, None)
    r = row(started)  # started, not acks_late: failed, not run twice
    assert (r.state, r.exc_type, r.done_at) == (
        states.FAILURE,
        "djtasks.exceptions.WorkerLostError",
        after,
    )
    assert r.exc_message == "worker dead-worker stopped (lease expired) while running this task"
    r = row(late)  # started, acks_late: run again
    assert (r.state, r.worker, r.started_at) == (states.PENDING, "", None)
    assert row(alive).state == states.STARTED  # its lease is still good

    with pytest.raises(Exception, match="stopped \\(lease expired\\)") as info:
        AsyncResult(started).get(timeout=1)
    assert type(info.value).__name__ == "WorkerLostError"
    assert queue.rescue_expired(after) == queue.Rescued(0, 0)


# -- outcomes and fencing ------------------------------------------------------------


@pytest.mark.django_db
def test_complete_writes_success_and_failure() -> None:
    put()
    put()
    ok, bad = claim_and_start()
    queue.complete(
        [
            success(ok, '{"a": 1}'),
            queue.Outcome(
                bad.id,
                bad.attempt,
                states.FAILURE,
                T0,
                runtime=0.5,
                exc_type="builtins.KeyError",
                exc_message="'k'",
                traceback="Traceback...",
            ),
        ]
    )
    r = row(ok.id)
    assert (r.state, r.result, r.done_at, r.lease_expires, r.runtime) == (
        states.SUCCESS,
        '{"a": 1}',
        T0,
        None,
        0.01,
    )
    r = row(bad.id)
    assert (r.state, r.exc_type, r.exc_message, r.traceback) == (
        states.FAILURE,
        "builtins.KeyError",
        "'k'",
        "Traceback...",
    )


@pytest.mark.django_db
def test_a_late_write_from_an_older_attempt_is_ignored() -> None:
    put()
    [old] = claim_and_start("w1")
    # w1 stops renewing; the row is re-queued (say acks_late) and claimed by w2.
    TaskRecord.objects.filter(pk=old.id).update(acks_late=True)
    queue.rescue_expired(T0 + dt.timedelta(seconds=LEASE + 1))
    [new] = claim_and_start("w2", now=T0 + dt.timedelta(seconds=LEASE + 2))
    assert (old.attempt, new.attempt) == (1, 2)

    queue.complete([success(old, '"stale"')])  # w1 wakes up and reports
    r = row(new.id)
    assert (r.state, r.worker, r.result) == (states.STARTED, "w2", None)
    retry_outcome = queue.Outcome(
        old.id, old.attempt, states.RETRY, T0, retry_eta=T0, exc_type="x.Y"
    )
    queue.complete([retry_outcome])
    assert row(new.id).state == states.STARTED

    queue.complete([success(new, '"fresh"')])
    assert (row(new.id).state, row(new.id).result) == (states.SUCCESS, '"fresh"')


@pytest.mark.django_db
def test_an_outcome_for_a_finished_row_changes_nothing() -> None:
    put()
    [c] = claim_and_start()
    queue.complete([success(c, '"first"')])
    queue.complete([queue.Outcome(c.id, c.attempt, states.FAILURE, T0, exc_type="x.Y")])
    assert (row(c.id).state, row(c.id).result) == (states.SUCCESS, '"first"')


@pytest.mark.django_db
def test_retry_outcome_requeues_with_eta_count_and_new_arguments() -> None:
    tid = put()
    [c] = claim_and_start()
    eta = T0 + dt.timedelta(seconds=10)
    queue.complete(
        [
            queue.Outcome(
                c.id,
                c.attempt,
                states.RETRY,
                T0,
                runtime=0.1,
                exc_type="builtins.OSError",
                exc_message="later",
                retry_eta=eta,
                new_payload="[[5, 5], {}]",
            )
        ]
    )
    r = row(tid)
    assert (r.state, r.eta, r.retries, r.worker, r.lease_expires) == (
        states.RETRY,
        eta,
        1,
        "",
        None,
    )
    assert (r.payload, r.exc_type, r.exc_message) == ("[[5, 5], {}]", "builtins.OSError", "later")
    assert claim(now=eta - dt.timedelta(seconds=1)) == []  # not before its eta
    [again] = claim(now=eta)
    assert (again.id, again.retries, again.attempt, again.payload) == (tid, 1, 2, "[[5, 5], {}]")


@pytest.mark.django_db
def test_progress_is_visible_while_running_and_cleared_at_the_end() -> None:
    put()
    [c] = claim_and_start()
    queue.set_progress(c.id, "PROGRESS", "application/json", '{"done": 2}')
    result = AsyncResult(c.id)
    assert (result.state, result.info) == ("PROGRESS", {"done": 2})
    queue.complete([success(c, "7")])
    result = AsyncResult(c.id)
    assert (result.state, result.result) == (states.SUCCESS, 7)


# -- revoke ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_revoke_cancels_waiting_tasks_but_not_running_or_finished_ones() -> None:
    pending = put(queue_name="p")
    retrying = put(queue_name="r")
    TaskRecord.objects.filter(pk=retrying).update(state=states.RETRY)
    running = put(queue_name="s")
    claim_and_start(queues=("s",))

    revoked = queue.revoke([pending, retrying, running], "changed my mind", T0)
    assert sorted(revoked) == sorted([pending, retrying])
    for tid in (pending, retrying):
        r = row(tid)
        assert (r.state, r.exc_type, r.exc_message, r.done_at) == (
            states.REVOKED,
            "djtasks.exceptions.TaskRevokedError",
            "changed my mind",
            T0,
        )
    assert row(running).state == states.STARTED
    assert AsyncResult(running).revoke() is False
    assert queue.revoke([pending], "again", T0) == []  # already final
    assert row(pending).exc_message == "changed my mind"


@pytest.mark.django_db
def test_revoke_fenced_by_attempt_leaves_a_newer_claim_alone() -> None:
    tid = put()
    [c] = claim()
    assert queue.revoke([tid], "expired", T0, attempt=c.attempt + 1) == []
    assert queue.revoke([tid], "expired", T0, attempt=c.attempt) == [tid]


# -- transactional enqueue ---------------------------------------------------------------


def _exists(task_id: str) -> bool:
    return TaskRecord.objects.filter(pk=task_id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_task_enqueued_in_a_transaction_is_invisible_until_commit() -> None:
    with transaction.atomic():
        result = tasks.add.delay(1, 2)
        assert _exists(result.id)  # this connection sees its own write
        assert in_other_connection(lambda: _exists(result.id)) is False
        if on_postgres():  # (SQLite: a claim would wait for this writer's lock)
            assert in_other_connection(lambda: claim("w-other")) == []
    assert in_other_connection(lambda: _exists(result.id)) is True
    assert [c.id for c in in_other_connection(lambda: claim("w-other", now=timezone.now()))] == [
        result.id
    ]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_no_task() -> None:
    class AbortError(Exception):
        pass

    with pytest.raises(AbortError), transaction.atomic():
        tasks.add.delay(1, 2)
        tasks.add.apply_async((3, 4), countdown=10)
        raise AbortError
    assert TaskRecord.objects.count() == 0
    assert in_other_connection(lambda: TaskRecord.objects.count()) == 0


@pytest.mark.django_db(transaction=True)
def test_a_task_enqueued_in_a_savepoint_that_rolls_back_is_gone_too() -> None:
    with transaction.atomic():
        kept = tasks.add.delay(1, 1)
        try:
            with transaction.atomic():
                tasks.add.delay(2, 2)
                raise RuntimeError
        except RuntimeError:
            pass
    assert list(TaskRecord.objects.values_list("id", flat=True)) == [uuid.UUID(kept.id)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_wake_up_is_sent_only_when_the_transaction_commits() -> None:
    django_conn = connection()
    listen = django_conn.get_new_connection(django_conn.get_connection_params())
    listen.autocommit = True
    listen.execute(f"LISTEN {queue.NOTIFY_CHANNEL}")

    def notified(timeout: float) -> list[str]:
        return [n.payload for n in listen.notifies(timeout=timeout, stop_after=1)]

    try:
        with transaction.atomic():
            tasks.add.apply_async((1, 2), queue="mail")
            assert notified(0.3) == []
        assert notified(5) == ["mail"]

        with pytest.raises(ZeroDivisionError), transaction.atomic():
            tasks.add.delay(1, 2)
            1 / 0  # noqa: B018
        assert notified(0.3) == []
    finally:
        listen.close()


# -- prepared statements (PostgreSQL) ----------------------------------------


def prepared_statements() -> list[str]:
    """The statements prepared on the queue's connection, as PostgreSQL lists them."""
    with connection().cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [s for (s,) in cursor.fetchall()]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_hot_statements_are_prepared_on_djangos_default_connection() -> None:
    # Django opens psycopg connections with its statement cache off
    # (prepare_threshold None): the enqueue and the claim must still be
    # prepared, each once, and Django's own queries must not be.
    connection().close()
    connection().ensure_connection()
    assert connection().connection.prepare_threshold is None
    for _ in range(3):
        put()
    claim(limit=1)
    for _ in range(10):
        TaskRecord.objects.filter(state=states.PENDING).count()
    statements = prepared_statements()
    inserts = [s for s in statements if "INSERT INTO djtasks_taskrecord" in s]
    claims = [s for s in statements if "FOR UPDATE SKIP LOCKED" in s]
    assert inserts and claims, statements
    assert len(set(statements)) == len(statements), "a statement prepared twice"
    assert not [s for s in statements if "COUNT(" in s.upper()], statements


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_prepare_statements_false_prepares_nothing(settings: Any) -> None:
    settings.DJTASKS_PREPARE_STATEMENTS = False
    connection().close()
    for _ in range(3):
        put()
    claim(limit=1)
    assert prepared_statements() == []
