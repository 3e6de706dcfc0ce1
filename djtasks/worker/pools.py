"""Execution pools: where claimed tasks run.

Every pool has the same small interface for the consumer loop: ``free()``
slots, ``submit()`` a task, ``waitables()`` to sleep on, ``collect()``
finished outcomes, and ``stop()``. Only the consumer writes to the queue
tables; pools just run tasks and hand back outcomes.

- ``prefork``: child processes (forked, so they start fast and share the
  loaded code). A child that dies, or overruns its hard time limit, is
  replaced and its task ends FAILURE saying why.
- ``threads``: threads in the worker process (soft time limits only).
- ``solo``: runs each task inline in the worker process; for debugging.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue as stdqueue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from django.db import connections
from django.utils import timezone

from .. import states
from ..conf import settings
from ..exceptions import SoftTimeLimitExceeded
from ..queue import Claimed, Outcome
from .executor import execute

logger = logging.getLogger("djtasks.worker")


@dataclass
class Job:
    """A task handed to a pool, with the limits it runs under."""

    claimed: Claimed
    soft_time_limit: float | None = None
    time_limit: float | None = None


def lost(claimed: Claimed, exc_type: str, message: str) -> Outcome:
    return Outcome(
        claimed.id,
        claimed.attempt,
        states.FAILURE,
        timezone.now(),
        exc_type=exc_type,
        exc_message=message,
        task_name=claimed.name,
    )


class Pool:
    name = "?"

    def __init__(self, concurrency: int, hostname: str) -> None:
        self.concurrency = concurrency
        self.hostname = hostname

    def start(self) -> None: ...
    def free(self) -> int:
        raise NotImplementedError

    def submit(self, job: Job) -> None:
        raise NotImplementedError

    def waitables(self) -> list[Any]:
        return []

    def collect(self) -> list[Outcome]:
        raise NotImplementedError

    def running(self) -> list[Job]:
        raise NotImplementedError

    def check_limits(self) -> list[Outcome]:
        return []

    def grow(self, n: int) -> None:
        raise NotImplementedError(f"the {self.name} pool cannot grow")

    def shrink(self, n: int) -> None:
        raise NotImplementedError(f"the {self.name} pool cannot shrink")

    def terminate(self, task_id: str) -> Outcome | None:
        """Stop the task ``task_id`` now if it runs here; return its outcome."""
        return None

    def stop(self, cold: bool = False) -> tuple[list[Job], list[Job]]:
        """Stop the pool. Cold: return the jobs cut off while running, and the
        jobs handed over that never started."""
        return [], []


# Each slot holds a running job plus this many waiting behind it, so a child
# never idles while the worker writes outcomes and fetches the next tasks.
DEPTH = 2


# -- solo ------------------------------------------------------------------------


class SoloPool(Pool):
    name = "solo"

    def __init__(self, concurrency: int, hostname: str) -> None:
        super().__init__(1, hostname)
        self._done: list[Outcome] = []
        self._current: Job | None = None  # the job running now (seen by the lease thread)

    def free(self) -> int:
        return 1

    def submit(self, job: Job) -> None:
        self._current = job
        try:
            self._done.append(execute(job.claimed, self.hostname))
        finally:
            self._current = None

    def collect(self) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def running(self) -> list[Job]:
        current = self._current
        return [current] if current is not None else []


# -- threads -------------------------------------------------------------------


class ThreadPool(Pool):
    name = "threads"

    def __init__(self, concurrency: int, hostname: str) -> None:
        super().__init__(concurrency, hostname)
        self._inbox: stdqueue.SimpleQueue[Job | None] = stdqueue.SimpleQueue()
        self._done: list[Outcome] = []
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._started: dict[str, tuple[int, float]] = {}  # task id → (thread, start)
        self._soft_fired: set[str] = set()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._add_threads(self.concurrency)

    def _add_threads(self, n: int) -> None:
        for _ in range(n):
            t = threading.Thread(
                target=self._loop, name=f"djtasks-{len(self._threads)}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def grow(self, n: int) -> None:
        self.concurrency += n
        self._add_threads(n)

    def shrink(self, n: int) -> None:
        n = min(n, self.concurrency - 1)
        self.concurrency -= n
        for _ in range(n):
            self._inbox.put(None)  # the next n idle threads exit

    def check_limits(self) -> list[Outcome]:
        """Raise SoftTimeLimitExceeded inside threads past their soft limit.

        Threads cannot be killed, so a hard ``time_limit`` is not enforced in
        this pool (the worker says so at start-up).
        """
        now = time.monotonic()
        with self._lock:
            for task_id, (ident, started) in self._started.items():
                job = self._jobs.get(task_id)
                if (
                    job is None
                    or not job.soft_time_limit
                    or task_id in self._soft_fired
                    or now - started < job.soft_time_limit
                ):
                    continue
                self._soft_fired.add(task_id)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(SoftTimeLimitExceeded)
                )
        return []

    def _loop(self) -> None:
        while True:
            job = self._inbox.get()
            if job is None:
                break
            with self._lock:
                if self._stopping:
                    continue  # cold shutdown: leave it unstarted
                self._started[job.claimed.id] = (threading.get_ident(), time.monotonic())
            outcome = execute(job.claimed, self.hostname)
            with self._lock:
                self._done.append(outcome)
                self._jobs.pop(job.claimed.id, None)
                self._started.pop(job.claimed.id, None)
                self._soft_fired.discard(job.claimed.id)
            os.write(self._wake_w, b"x")
        connections.close_all()

    def free(self) -> int:
        with self._lock:
            return self.concurrency * DEPTH - len(self._jobs)

    def submit(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.claimed.id] = job
        self._inbox.put(job)

    def waitables(self) -> list[Any]:
        return [self._wake_r]

    def collect(self) -> list[Outcome]:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            done, self._done = self._done, []
        return done

    def running(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def stop(self, cold: bool = False) -> tuple[list[Job], list[Job]]:
        if cold:
            # Threads cannot be killed: report what runs as cut off, and make
            # sure nothing waiting starts now.
            with self._lock:
                self._stopping = True
                running = [j for i, j in self._jobs.items() if i in self._started]
                waiting = [j for i, j in self._jobs.items() if i not in self._started]
        for _ in self._threads:
            self._inbox.put(None)
        if cold:
            return running, waiting
        for t in self._threads:
            t.join()
        return [], []


# -- prefork -------------------------------------------------------------------

# Connections inherited from the parent at fork. Kept referenced so the child
# never finalises them: closing one would end the parent's session too.
_inherited: list[Any] = []


def _die_with_parent() -> None:
    # Linux: if the worker itself is killed (kill -9), its children die too
    # instead of running what is left in their pipes with nobody to report to.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_setup() -> None:
    _die_with_parent()
    signal.set_wakeup_fd(-1)
    # Ctrl-C and SIGTERM are the parent's to handle (systemd and terminals
    # signal the whole process group): it decides between a warm shutdown and
    # killing children outright.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _inherited.append(conn.connection)
            conn.connection = None


def _on_soft_limit(signum: int, frame: Any) -> None:
    raise SoftTimeLimitExceeded("soft time limit exceeded")


def _rss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _child_main(
    pipe: Connection, hostname: str, max_tasks: int | None, max_memory_kib: int | None = None
) -> None:
    _child_setup()
    signal.signal(signal.SIGALRM, _on_soft_limit)
    done = 0
    while True:
        try:
            job = pipe.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        if job.soft_time_limit:
            signal.setitimer(signal.ITIMER_REAL, job.soft_time_limit)
        try:
            outcome = execute(job.claimed, hostname)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        done += 1
        over_memory = bool(max_memory_kib and _rss_kib() > max_memory_kib)
        if over_memory:
            logger.warning(
                "child %s uses %d KiB > --max-memory-per-child %d KiB; replacing it",
                os.getpid(),
                _rss_kib(),
                max_memory_kib,
            )
        leaving = over_memory or bool(max_tasks and done >= max_tasks)
        # Said with the outcome, so the parent hands this child nothing more.
        pipe.send((outcome, leaving))
        if leaving:
            break
    connections.close_all()


@dataclass
class _Child:
    process: Any
    pipe: Connection
    jobs: deque[Job] = field(default_factory=deque)  # jobs[0] runs, the rest wait
    started: float = 0.0  # when jobs[0] started, as near as the parent can tell
    retiring: bool = False  # shrinking: takes no more jobs, exits when done
    leaving: bool = False  # said it exits after its task (limits): replaced, no new jobs
    given: int = 0  # jobs handed to it in its life (it exits after max_tasks_per_child)


class PreforkPool(Pool):
    name = "prefork"

    def __init__(
        self,
        concurrency: int,
        hostname: str,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        super().__init__(concurrency, hostname)
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child
        self._ctx = multiprocessing.get_context("fork")
        self._children: list[_Child] = []
        self._unstarted: list[Job] = []  # handed to a child that died before running them

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._children.append(self._spawn())

    def _spawn(self) -> _Child:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_child_main,
            args=(child_end, self.hostname, self.max_tasks_per_child, self.max_memory_per_child),
            name="djtasks-child",
            daemon=True,
        )
        process.start()
        child_end.close()
        return _Child(process, parent_end)

    def _depth(self) -> int:
        # A child that will exit after its next tasks must not be handed more.
        return 1 if self.max_tasks_per_child or self.max_memory_per_child else DEPTH

    def _open(self) -> list[_Child]:
        # A child that has been given its last task before --max-tasks-per-child
        # exits after it: a job sent to it then would never run.
        return [
            c
            for c in self._children
            if not c.retiring
            and not c.leaving
            and c.process.is_alive()
            and not (self.max_tasks_per_child and c.given >= self.max_tasks_per_child)
        ]

    def free(self) -> int:
        depth = self._depth()
        return sum(depth - len(c.jobs) for c in self._open())

    def grow(self, n: int) -> None:
        self.concurrency += n
        self._children.extend(self._spawn() for _ in range(n))

    def shrink(self, n: int) -> None:
        """Retire ``n`` children (idle ones first); busy ones finish their jobs first."""
        n = min(n, self.concurrency - 1)
        self.concurrency -= n
        for child in sorted(self._open(), key=lambda c: len(c.jobs))[:n]:
            child.retiring = True
            self._retire_if_idle(child)

    def _retire_if_idle(self, child: _Child) -> None:
        if child.retiring and not child.jobs:
            try:
                child.pipe.send(None)
            except OSError:
                pass

    def terminate(self, task_id: str) -> Outcome | None:
        for i, child in enumerate(self._children):
            if child.jobs and child.jobs[0].claimed.id == task_id:
                job = child.jobs[0]
                logger.warning(
                    "terminating %s[%s] (child %s)", job.claimed.name, task_id, child.process.pid
                )
                child.process.kill()
                out: list[Outcome] = []
                self._children[i] = self._replace(child, out, reason="terminated")
                self._children = [c for c in self._children if c is not None]
                return Outcome(
                    task_id,
                    job.claimed.attempt,
                    states.REVOKED,
                    timezone.now(),
                    exc_type="djtasks.exceptions.TaskRevokedError",
                    exc_message="terminated while running (revoke --terminate)",
                    task_name=job.claimed.name,
                )
        return None

    def submit(self, job: Job) -> None:
        depth = self._depth()
        child = min(
            (c for c in self._open() if len(c.jobs) < depth),
            key=lambda c: len(c.jobs),
            default=None,
        )
        if child is None:
            # The consumer saw a free slot, then marked the row STARTED, and the
            # child died in between: hand the job back to be re-queued, for a
            # raise here would leave the row STARTED with nobody running it.
            logger.warning(
                "no live child for %s[%s]; re-queueing it", job.claimed.name, job.claimed.id
            )
            self._unstarted.append(job)
            return
        if not child.jobs:
            child.started = time.monotonic()
        child.jobs.append(job)
        child.given += 1
        try:
            child.pipe.send(job)
        except OSError:
            pass  # the child died; collect() reports it and re-queues what never started

    def waitables(self) -> list[Any]:
        return [c.pipe for c in self._children] + [c.process.sentinel for c in self._children]

    def collect(self) -> list[Outcome]:
        done: list[Outcome] = []
        for i, child in enumerate(self._children):
            while child.jobs and child.pipe.poll():
                try:
                    outcome, leaving = child.pipe.recv()
                    done.append(outcome)
                    child.leaving = child.leaving or leaving
                except (EOFError, OSError):
                    break
                child.jobs.popleft()
                child.started = time.monotonic()
            self._retire_if_idle(child)
            if not child.process.is_alive():
                self._children[i] = self._replace(child, done)
        self._children = [c for c in self._children if c is not None]
        return done

    def take_unstarted(self) -> list[Job]:
        """Jobs given to children that died before starting them (to re-queue)."""
        jobs, self._unstarted = self._unstarted, []
        return jobs

    def _replace(
        self, child: _Child, done: list[Outcome], reason: str | None = None
    ) -> _Child | None:
        child.process.join()
        code = child.process.exitcode
        if child.jobs:
            running = child.jobs.popleft()
            if reason is None:
                how = (
                    f"signal {signal.Signals(-code).name}"
                    if code is not None and code < 0
                    else f"exit code {code}"
                )
                logger.error(
                    "child process %s died (%s) while running %s[%s]",
                    child.process.pid,
                    how,
                    running.claimed.name,
                    running.claimed.id,
                )
                c = running.claimed
                if c.acks_late and c.attempt - c.retries < settings.MAX_REDELIVERIES:
                    self._unstarted.append(running)  # acks_late: deliver it again
                else:
                    done.append(
                        lost(
                            c,
                            "djtasks.exceptions.WorkerLostError",
                            f"the worker's child process died ({how}) while running this task",
                        )
                    )
            self._unstarted.extend(child.jobs)
        child.pipe.close()
        if child.retiring:
            return None  # shrunk away: not replaced
        return self._spawn()

    def running(self) -> list[Job]:
        return [j for c in self._children for j in c.jobs] + self._unstarted

    def check_limits(self) -> list[Outcome]:
        """Kill children past their task's hard time limit; their tasks fail."""
        now = time.monotonic()
        out: list[Outcome] = []
        for i, child in enumerate(self._children):
            job = child.jobs[0] if child.jobs else None
            if job is None or not job.time_limit or now - child.started < job.time_limit:
                continue
            # Its outcome may have arrived just now: read before judging.
            while child.jobs and child.pipe.poll():
                try:
                    outcome, leaving = child.pipe.recv()
                    out.append(outcome)
                    child.leaving = child.leaving or leaving
                except (EOFError, OSError):
                    break
                child.jobs.popleft()
                child.started = now
            if not child.jobs or child.jobs[0] is not job:
                continue
            logger.error(
                "task %s[%s] exceeded its time limit of %ss; killing child %s",
                job.claimed.name,
                job.claimed.id,
                job.time_limit,
                child.process.pid,
            )
            child.process.kill()
            out.append(
                lost(
                    job.claimed,
                    "djtasks.exceptions.TimeLimitExceeded",
                    f"hard time limit ({job.time_limit}s) exceeded",
                )
            )
            self._children[i] = self._replace(child, out, reason="time limit")
        self._children = [c for c in self._children if c is not None]
        return out

    def stop(self, cold: bool = False) -> tuple[list[Job], list[Job]]:
        running: list[Job] = []
        waiting: list[Job] = self.take_unstarted()
        for child in self._children:
            if cold:
                child.process.kill()
                if child.jobs:
                    running.append(child.jobs[0])
                    waiting.extend(list(child.jobs)[1:])
            else:
                try:
                    child.pipe.send(None)
                except OSError:
                    pass
        for child in self._children:
            child.process.join()
            child.pipe.close()
        self._children = []
        return running, waiting


POOLS: dict[str, Callable[..., Pool]] = {
    "prefork": PreforkPool,
    "threads": ThreadPool,
    "solo": SoloPool,
}
