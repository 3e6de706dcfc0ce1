"""Tasks the benchmarks enqueue.

``noop`` measures the queue, not the task. ``noop_verified`` is the same
no-op that also proves it ran: it appends its task id to a journal file of
its process (one ``write(2)`` of ~37 bytes, a few microseconds, so the
drain rate it measures is the no-op's). ``realistic`` is issue 8's "1 ms of
CPU plus one ORM query", the query being an INSERT into a table with
UNIQUE(task_id), so the database itself refuses a second run.
"""

from __future__ import annotations

import os
import time
from typing import Any

from djtasks import task

#: Directory of the journal files ``noop_verified`` writes, one per process.
JOURNAL_ENV = "DJTASKS_BENCH_JOURNAL"

_journal_fd: dict[int, int] = {}


@task(name="bench.noop")
def noop(i: int = 0) -> None:
    """Does nothing."""


def _journal() -> int:
    pid = os.getpid()
    fd = _journal_fd.get(pid)
    if fd is None:
        directory = os.environ.get(JOURNAL_ENV)
        if not directory:
            raise RuntimeError(f"bench.noop_verified needs {JOURNAL_ENV} (a directory)")
        # O_APPEND: every line lands whole, whatever other processes write.
        fd = os.open(
            os.path.join(directory, f"{pid}.ids"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        _journal_fd[pid] = fd
    return fd


@task(name="bench.noop_verified", bind=True)
def noop_verified(self: Any, i: int = 0) -> None:
    """Does nothing but record that this task id ran, in this process's journal."""
    os.write(_journal(), f"{self.request.id}\n".encode())


@task(name="bench.noop_recorded", bind=True)
def noop_recorded(self: Any, i: int = 0) -> None:
    """Does nothing but INSERT its task id into a UNIQUE column (``--w2-verify table``)."""
    from benchmarks.models import Execution

    Execution.objects.create(task_id=self.request.id, pid=os.getpid())


@task(name="bench.latency")
def latency(enqueued_at: float) -> float:
    """Returns the wall-clock time at which it started (``enqueued_at`` was taken
    just before ``.delay()``)."""
    return time.time()


@task(name="bench.realistic", bind=True)
def realistic(self: Any, i: int = 0) -> None:
    """1 ms of CPU (this thread's CPU time, not wall time), then one ORM INSERT."""
    from benchmarks.models import Execution

    until = time.thread_time() + 0.001
    while time.thread_time() < until:
        pass
    Execution.objects.create(task_id=self.request.id, pid=os.getpid())
