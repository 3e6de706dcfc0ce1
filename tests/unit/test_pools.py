"""worker/pools.py without a database: what a pool does when its processes die."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait

import pytest

from djtasks import serialization, states
from djtasks.queue import Claimed, Outcome
from djtasks.worker.pools import DEPTH, MAX_DEPTH, Job, PreforkPool, _decode, _report
from tests.support import wait_until
from tests.testapp import tasks

WORKER_LOST = "djtasks.exceptions.WorkerLostError"


def claimed(
    task_id: str = "00000000-0000-0000-0000-000000000001",
    name: str = "tests.testapp.tasks.add",
    payload: str = "[[1, 2], {}]",
) -> Claimed:
    return Claimed(
        db_id=task_id, id=task_id, name=name, queue="default",
        priority=0, content_type="application/json", payload=payload, headers={},
        retries=0, attempt=1, acks_late=False, ignore_result=False, expired=False, eta=None,
        parent_id=None, root_id=None, group_id=None,
    )  # fmt: skip


def call(task: object, *args: object) -> Claimed:
    name = task.name  # type: ignore[attr-defined]
    content_type, payload = serialization.encode_arguments(name, list(args), {}, "json")
    c = claimed(str(uuid.uuid4()), name, payload)
    c.content_type = content_type
    return c


def started_pool(concurrency: int = 1, **options: object) -> PreforkPool:
    pool = PreforkPool(concurrency, "unit-test", **options)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        # Python 3.12 warns about fork() if any thread is alive in this process.
        warnings.simplefilter("ignore", DeprecationWarning)
        pool.start()
    return pool


@pytest.fixture
def prefork() -> Iterator[PreforkPool]:
    pool = started_pool()
    yield pool
    pool.stop(cold=True)


def drain(
    pool: PreforkPool, jobs: list[Job], seen: Callable[[int], None] = lambda n: None
) -> list[Outcome]:
    """Run ``jobs`` as the worker does: hand over as many as there are free
    slots, sleep on the pool, collect; ``seen`` hears each collect's size."""
    waiting, done = list(jobs), []
    deadline = time.monotonic() + 30
    while len(done) < len(jobs):
        assert time.monotonic() < deadline, f"{len(done)} of {len(jobs)} done"
        take = pool.free()
        if take and waiting:
            pool.submit_many(waiting[:take])
            del waiting[:take]
        wait(pool.waitables(), timeout=1)
        got = pool.collect()
        if got:
            seen(len(got))
        done.extend(got)
    return done


def test_a_job_for_a_child_that_died_a_moment_ago_is_handed_back(prefork: PreforkPool) -> None:
    [child] = prefork._children
    assert prefork.free() > 0  # what the consumer saw
    child.process.kill()  # ... and then the child died (OOM killer, kill -9)
    child.process.join()
    job = Job(claimed())
    prefork.submit(job)  # the row is already STARTED: the job must not vanish
    assert prefork.take_unstarted() == [job]


def test_short_tasks_go_to_a_child_in_batches() -> None:
    pool = started_pool(2, lookahead=0.005)
    try:
        assert pool.free() == 2 * DEPTH  # nothing is known of the run times yet
        sizes: list[int] = []
        jobs = [Job(call(tasks.add, i, i)) for i in range(3000)]
        outcomes = drain(pool, jobs, sizes.append)
        assert sorted(json.loads(o.result or "null") for o in outcomes) == [
            2 * i for i in range(3000)
        ]
        assert {o.state for o in outcomes} == {states.SUCCESS}
        # Microsecond tasks: each child now holds far more than one waiting
        # task; one read takes in every outcome reported since the last.
        assert DEPTH < pool._depth() <= MAX_DEPTH
        assert pool.free() == 2 * pool._depth()
        assert max(sizes) >= 10, sizes[:50]
    finally:
        pool.stop()


def test_lookahead_zero_keeps_one_task_waiting_per_child() -> None:
    pool = started_pool(2, lookahead=0)
    try:
        drain(pool, [Job(call(tasks.add, i, i)) for i in range(300)])
        assert pool._depth() == DEPTH and pool.free() == 2 * DEPTH
    finally:
        pool.stop()


def test_a_task_long_enough_shrinks_the_queue_at_once() -> None:
    pool = started_pool(1, lookahead=0.005)
    try:
        drain(pool, [Job(call(tasks.add, i, i)) for i in range(500)])
        assert pool._depth() > DEPTH
        drain(pool, [Job(call(tasks.nap, 0.05))])
        assert pool._depth() == DEPTH  # 50 ms tasks: one waits behind the running one
    finally:
        pool.stop()


def _running(pool: PreforkPool, task_id: str) -> bool:
    [child] = pool._children
    at = child.running_index()
    return at is not None and child.jobs[at].claimed.id == task_id


def test_a_child_killed_mid_batch_fails_its_task_and_hands_back_the_unstarted() -> None:
    pool = started_pool(1, lookahead=0.005)
    try:
        drain(pool, [Job(call(tasks.add, i, i)) for i in range(500)])  # learn: short tasks
        before = [Job(call(tasks.add, i, 1)) for i in range(5)]
        nap = Job(call(tasks.nap, 30))
        after = [Job(call(tasks.add, i, 2)) for i in range(5)]
        assert pool.free() >= 11
        pool.submit_many([*before, nap, *after])  # one message to the one child
        [child] = pool._children
        wait_until(lambda: _running(pool, nap.claimed.id), 10, message="the nap to start")
        # The child reports each outcome as soon as it has it.
        outcomes: list[Outcome] = []
        wait_until(lambda: outcomes.extend(pool.collect()) or len(outcomes) == 5, 5)
        assert [o.task_id for o in outcomes] == [j.claimed.id for j in before]
        assert list(child.jobs) == [nap, *after]
        child.process.kill()
        child.process.join()
        [lost] = pool.collect()
        assert (lost.task_id, lost.exc_type) == (nap.claimed.id, WORKER_LOST)
        assert pool.take_unstarted() == after  # never started: back to the queue
        assert len(pool._children) == 1 and pool._children[0].process.is_alive()
    finally:
        pool.stop(cold=True)


def test_a_hard_time_limit_in_the_middle_of_a_batch() -> None:
    pool = started_pool(1, lookahead=0.005)
    try:
        drain(pool, [Job(call(tasks.add, i, i)) for i in range(500)])
        nap = Job(call(tasks.nap, 30), time_limit=0.3)
        after = [Job(call(tasks.add, i, 2)) for i in range(5)]
        pool.submit_many([Job(call(tasks.add, 1, 1)), nap, *after])
        outcomes: list[Outcome] = []
        deadline = time.monotonic() + 10
        while not any(o.task_id == nap.claimed.id for o in outcomes):
            assert time.monotonic() < deadline
            time.sleep(0.05)
            outcomes += pool.collect() + pool.check_limits()
        [limited] = [o for o in outcomes if o.task_id == nap.claimed.id]
        assert (limited.state, limited.exc_type) == (
            states.FAILURE,
            "djtasks.exceptions.TimeLimitExceeded",
        )
        assert pool.take_unstarted() == after
    finally:
        pool.stop(cold=True)


def test_a_cold_stop_reports_what_ran_and_what_never_started() -> None:
    pool = started_pool(1, lookahead=0.005)
    drain(pool, [Job(call(tasks.add, i, i)) for i in range(500)])
    nap = Job(call(tasks.nap, 30))
    after = [Job(call(tasks.add, i, 2)) for i in range(3)]
    pool.submit_many([nap, *after])
    wait_until(lambda: _running(pool, nap.claimed.id), 10, message="the nap to start")
    cut, unstarted = pool.stop(cold=True)
    assert cut == [nap] and unstarted == after


def test_terminate_in_the_middle_of_a_batch() -> None:
    pool = started_pool(1, lookahead=0.005)
    try:
        drain(pool, [Job(call(tasks.add, i, i)) for i in range(500)])
        before = [Job(call(tasks.add, i, 1)) for i in range(3)]
        nap = Job(call(tasks.nap, 30))
        after = [Job(call(tasks.add, i, 2)) for i in range(3)]
        pool.submit_many([*before, nap, *after])
        wait_until(lambda: _running(pool, nap.claimed.id), 10, message="the nap to start")
        revoked = pool.terminate(nap.claimed.id)
        assert revoked is not None
        assert (revoked.task_id, revoked.state) == (nap.claimed.id, states.REVOKED)
        # The tasks it finished before are reported, those behind it handed back.
        finished = pool.collect()
        assert sorted(o.task_id for o in finished) == sorted(j.claimed.id for j in before)
        assert {o.state for o in finished} == {states.SUCCESS}
        assert pool.take_unstarted() == after
        assert pool.terminate(nap.claimed.id) is None  # nothing of it runs any more
    finally:
        pool.stop(cold=True)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome("id-1", 2, states.SUCCESS, dt.datetime(2030, 1, 2, 3, 4, 5, 678901, dt.UTC),
                runtime=0.5, result='{"a": 1}', result_content_type="application/json",
                task_name="t", chord_id="c", root_id="r", workflow_planned=True),
        Outcome("id-2", 1, states.RETRY, dt.datetime(2030, 1, 2, tzinfo=dt.UTC),
                retry_eta=dt.datetime(2030, 1, 3, tzinfo=dt.UTC), new_payload="[[], {}]",
                exc_type="builtins.ValueError", exc_message="no", traceback="Traceback…"),
        Outcome("id-3", 1, states.FAILURE, dt.datetime(2030, 1, 2), skipped=["x"]),
    ],
    ids=["plain", "retry", "naive-time-and-workflow"],
)  # fmt: skip
def test_an_outcome_crosses_the_pipe_unchanged(outcome: Outcome) -> None:
    r, w = os.pipe()
    try:
        _report(w, outcome, leaving=True)
        framed = os.read(r, 1 << 16)
    finally:
        os.close(r)
        os.close(w)
    assert len(framed) == 4 + int.from_bytes(framed[:4], "big")
    assert _decode(bytearray(framed[4:])) == (outcome, True)
