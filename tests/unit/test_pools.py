"""worker/pools.py without a database: what a pool does when its processes die."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from djtasks.queue import Claimed
from djtasks.worker.pools import Job, PreforkPool


def claimed(task_id: str = "00000000-0000-0000-0000-000000000001") -> Claimed:
    return Claimed(
        db_id=task_id, id=task_id, name="tests.testapp.tasks.add", queue="default",
        priority=0, content_type="application/json", payload="[[1, 2], {}]", headers={},
        retries=0, attempt=1, acks_late=False, ignore_result=False, expired=False, eta=None,
        parent_id=None, root_id=None, group_id=None,
    )  # fmt: skip


@pytest.fixture
def prefork() -> Iterator[PreforkPool]:
    pool = PreforkPool(1, "unit-test")
    with warnings.catch_warnings():
        # Python 3.12 warns about fork() if any thread is alive in this process.
        warnings.simplefilter("ignore", DeprecationWarning)
        pool.start()
    yield pool
    pool.stop(cold=True)


def test_a_job_for_a_child_that_died_a_moment_ago_is_handed_back(prefork: PreforkPool) -> None:
    [child] = prefork._children
    assert prefork.free() > 0  # what the consumer saw
    child.process.kill()  # ... and then the child died (OOM killer, kill -9)
    child.process.join()
    job = Job(claimed())
    prefork.submit(job)  # the row is already STARTED: the job must not vanish
    assert prefork.take_unstarted() == [job]
