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
import dataclasses
import datetime as dt
import logging
import marshal
import multiprocessing
import os
import pickle
import queue as stdqueue
import signal
import struct
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

    def submit_many(self, jobs: list[Job]) -> None:
        """Hand over several jobs at once (no more than :meth:`free` slots)."""
        for job in jobs:
            self.submit(job)

    def waitables(self) -> list[Any]:
        return []

    def collect(self) -> list[Outcome]:
        raise NotImplementedError

    def running(self) -> list[Job]:
        """Every job handed over and not yet reported: running or queued."""
        raise NotImplementedError

    def executing(self) -> list[Job]:
        """The jobs running at this moment (``running()`` less those queued)."""
        return self.running()

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


# Each slot holds a running job plus at least one waiting behind it, so a
# child never idles while the worker writes outcomes and fetches the next
# tasks. A prefork child of short tasks holds more: DJTASKS_WORKER_LOOKAHEAD
# seconds of them, up to MAX_DEPTH (see PreforkPool._depth).
DEPTH = 2
MAX_DEPTH = 100
#: What running a task costs a child besides the task itself (decode, request,
#: signals, encode), in seconds: the floor of the per-task estimate.
TASK_OVERHEAD = 30e-6


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

    def executing(self) -> list[Job]:
        with self._lock:
            return [j for i, j in self._jobs.items() if i in self._started]

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
    pipe: Connection,
    hostname: str,
    max_tasks: int | None,
    max_memory_kib: int | None = None,
    progress: Any = None,
) -> None:
    """A prefork child: run the jobs the parent sends, in order, and report
    each outcome as soon as it has one.

    The parent sends lists of jobs, so a burst of short tasks costs it one
    pipe message per batch; it reads what the child reports in bulk too
    (:meth:`_Child.read`). Reporting each outcome at once means a child that
    dies loses only the outcome of the task it was running. ``progress``
    (shared memory) holds how many jobs this child has started and finished
    and when the last one started, so that the parent knows at any time
    which job runs (time limits, ``revoke --terminate``) and, if the child
    dies, which jobs never started.
    """
    _child_setup()
    signal.signal(signal.SIGALRM, _on_soft_limit)
    done = 0
    mono = time.monotonic
    out_fd = pipe.fileno()
    while True:
        try:
            jobs = pipe.recv()
        except (EOFError, OSError):
            break
        if jobs is None:
            break
        leaving = False
        for job in map(_unpack_job, jobs):
            if progress is not None:
                progress[1] = mono()
                progress[0] += 1
            if job.soft_time_limit:
                signal.setitimer(signal.ITIMER_REAL, job.soft_time_limit)
            try:
                outcome = execute(job.claimed, hostname)
            finally:
                if job.soft_time_limit:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            if progress is not None:
                progress[2] += 1
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
            # Said with the outcome, so the parent hands this child nothing
            # more (and re-queues what it will not run).
            _report(out_fd, outcome, leaving)
            if leaving:
                break
        if leaving:
            break
    connections.close_all()


@dataclass
class _Child:
    process: Any
    pipe: Connection
    # Shared with the child: [jobs started, when the last one started
    # (time.monotonic), jobs finished]. Written only by the child.
    progress: Any
    # Jobs handed over whose outcome has not come back, in the child's order:
    # finished (outcome on its way), running, then waiting.
    jobs: deque[Job] = field(default_factory=deque)
    reported: int = 0  # outcomes received: jobs[0] is the child's job number `reported`
    buffer: bytearray = field(default_factory=bytearray)  # read, not yet a whole message
    retiring: bool = False  # shrinking: takes no more jobs, exits when done
    leaving: bool = False  # said it exits after its task (limits): replaced, no new jobs
    given: int = 0  # jobs handed to it in its life (it exits after max_tasks_per_child)

    def running_index(self) -> int | None:
        """Where the job the child runs now is in ``jobs``, if it runs one."""
        started, finished = int(self.progress[0]), int(self.progress[2])
        if started == finished:
            return None
        i = started - 1 - self.reported
        return i if 0 <= i < len(self.jobs) else None

    def unstarted_from(self) -> int:
        """Index in ``jobs`` of the first job the child has not started."""
        return max(0, int(self.progress[0]) - self.reported)

    def read(self, done: list[Outcome]) -> None:
        """Take in the outcomes the child has sent so far.

        Everything waiting in the pipe is read at once and split into the
        child's messages (:func:`_report`): one or two system calls per turn
        rather than three per outcome. Nothing else reads from the child's end.
        """
        fd = self.pipe.fileno()
        try:
            while self.pipe.poll():
                chunk = os.read(fd, _READ_SIZE)
                if not chunk:
                    break  # the child has gone
                self.buffer += chunk
                if len(chunk) < _READ_SIZE:
                    break
        except OSError:
            pass
        buf, pos = self.buffer, 0
        while len(buf) - pos >= 4:
            (size,) = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 4 < size:
                break  # the rest of this message is still on its way
            outcome, leaving = _decode(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            done.append(outcome)
            self.leaving = self.leaving or leaving
            if self.jobs:
                self.jobs.popleft()
            self.reported += 1
        del buf[:pos]


_READ_SIZE = 1 << 16
_OUTCOME_FIELDS = tuple(f.name for f in dataclasses.fields(Outcome))
_CLAIMED_FIELDS = tuple(f.name for f in dataclasses.fields(Claimed))


def _pack_job(job: Job) -> tuple[Any, ...]:
    """A job as plain tuples for the pipe: pickling the dataclasses cost the
    worker more than anything else it does per task but the database."""
    c = job.claimed
    return (
        tuple(getattr(c, name) for name in _CLAIMED_FIELDS),
        job.soft_time_limit,
        job.time_limit,
    )


def _unpack_job(packed: tuple[Any, ...]) -> Job:
    fields, soft, hard = packed
    return Job(Claimed(*fields), soft, hard)


_HEADER = struct.Struct("!I")
# The fields of a plain outcome (no workflow, no retry time) that travel as
# marshal data, its time as a UTC timestamp: a fifth of pickle's cost, paid
# for every task on both ends of the pipe.
_PLAIN = (
    "task_id", "attempt", "state", "runtime", "result", "result_content_type",
    "exc_type", "exc_message", "traceback", "new_payload", "task_name", "chord_id",
    "root_id", "workflow_planned",
)  # fmt: skip


def _report(fd: int, outcome: Outcome, leaving: bool) -> None:
    """Child side: write one outcome to the worker, framed by its length.

    Written at once, one outcome per message: if the child dies, only the
    outcome of the task it was running is lost.
    """
    done_at = outcome.done_at
    if (
        outcome.followups is None
        and not outcome.skipped
        and outcome.retry_eta is None
        and done_at.tzinfo is dt.UTC
    ):
        body = b"M" + marshal.dumps(
            (tuple(getattr(outcome, name) for name in _PLAIN), done_at.timestamp(), leaving)
        )
    else:
        fields = tuple(getattr(outcome, name) for name in _OUTCOME_FIELDS)
        body = b"P" + pickle.dumps((fields, leaving), pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(body)) + body)
    while view:
        view = view[os.write(fd, view) :]


def _decode(message: bytearray) -> tuple[Outcome, bool]:
    """Worker side: the outcome :func:`_report` wrote (our own forked child:
    marshal and pickle are as safe here as in ``multiprocessing`` itself)."""
    if message[:1] == b"M":
        plain, timestamp, leaving = marshal.loads(message[1:])  # noqa: S302
        outcome = Outcome(
            **dict(zip(_PLAIN, plain, strict=True)),
            done_at=dt.datetime.fromtimestamp(timestamp, dt.UTC),
        )
        return outcome, leaving
    fields, leaving = pickle.loads(message[1:])  # noqa: S301
    return Outcome(*fields), leaving


class PreforkPool(Pool):
    name = "prefork"

    def __init__(
        self,
        concurrency: int,
        hostname: str,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        lookahead: float | None = None,
    ) -> None:
        super().__init__(concurrency, hostname)
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child
        self.lookahead = settings.WORKER_LOOKAHEAD if lookahead is None else lookahead
        self._ctx = multiprocessing.get_context("fork")
        self._children: list[_Child] = []
        self._unstarted: list[Job] = []  # handed to a child that died before running them
        self._late: list[Outcome] = []  # read from children killed by a cold stop
        self._per_task: float | None = None  # recent seconds per task in a child

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._children.append(self._spawn())

    def _spawn(self) -> _Child:
        parent_end, child_end = self._ctx.Pipe()
        progress = self._ctx.RawArray("d", 3)
        process = self._ctx.Process(
            target=_child_main,
            args=(
                child_end,
                self.hostname,
                self.max_tasks_per_child,
                self.max_memory_per_child,
                progress,
            ),
            name="djtasks-child",
            daemon=True,
        )
        process.start()
        child_end.close()
        return _Child(process, parent_end, progress)

    def _depth(self) -> int:
        """How many jobs a child may hold: its running one and those waiting.

        A child that will exit after its next tasks must not be handed more.
        Otherwise one waiting job, or as many as DJTASKS_WORKER_LOOKAHEAD
        seconds of recent tasks: a child of 50 µs tasks would starve on a
        single waiting job while the worker writes to the database.
        """
        if self.max_tasks_per_child or self.max_memory_per_child:
            return 1
        if not self.lookahead or self._per_task is None:
            return DEPTH
        ahead = int(self.lookahead / self._per_task)
        return max(DEPTH, min(MAX_DEPTH, 1 + ahead))

    def _learn(self, outcomes: list[Outcome]) -> None:
        # The tasks' own run times, plus what running any task costs a child.
        runtimes = [o.runtime for o in outcomes if o.runtime is not None]
        if not runtimes:
            return
        per_task = TASK_OVERHEAD + sum(runtimes) / len(runtimes)
        if self._per_task is None:
            self._per_task = per_task
        else:
            # A slow task counts at once (no child holds a queue of them),
            # a fast one slowly (the queue grows over a few batches).
            weight = 0.5 if per_task > self._per_task else 0.1
            self._per_task += weight * (per_task - self._per_task)

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
        return sum(max(0, depth - len(c.jobs)) for c in self._open())

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
            at = child.running_index()
            if at is None or child.jobs[at].claimed.id != task_id:
                continue
            job = child.jobs[at]
            logger.warning(
                "terminating %s[%s] (child %s)", job.claimed.name, task_id, child.process.pid
            )
            child.process.kill()
            # What else it finished, or was running, collect() reports next.
            child.read(self._late)
            self._children[i] = self._replace(child, self._late, cut=job)
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
        self.submit_many([job])

    def submit_many(self, jobs: list[Job]) -> None:
        """Share ``jobs`` out among the children with room, least loaded first,
        in one pipe message per child."""
        depth = self._depth()
        batches: dict[int, list[Job]] = {}
        open_children = self._open()
        for job in jobs:
            child = min(
                (c for c in open_children if len(c.jobs) < depth),
                key=lambda c: len(c.jobs),
                default=None,
            )
            if child is None:
                # The consumer saw a free slot, then marked the row STARTED,
                # and the child died in between: hand the job back to be
                # re-queued, for a raise here would leave the row STARTED
                # with nobody running it.
                logger.warning(
                    "no live child for %s[%s]; re-queueing it", job.claimed.name, job.claimed.id
                )
                self._unstarted.append(job)
                continue
            child.jobs.append(job)
            child.given += 1
            batches.setdefault(id(child), []).append(job)
        for child in open_children:
            batch = batches.get(id(child))
            if batch:
                try:
                    child.pipe.send([_pack_job(job) for job in batch])
                except OSError:
                    pass  # the child died; collect() reports it and re-queues what never started

    def waitables(self) -> list[Any]:
        return [c.pipe for c in self._children] + [c.process.sentinel for c in self._children]

    def collect(self) -> list[Outcome]:
        done, self._late = self._late, []
        for i, child in enumerate(self._children):
            child.read(done)
            self._retire_if_idle(child)
            if not child.process.is_alive():
                child.read(done)  # what it sent before it died
                self._children[i] = self._replace(child, done)
        self._children = [c for c in self._children if c is not None]
        self._learn(done)
        return done

    def take_unstarted(self) -> list[Job]:
        """Jobs given to children that died before starting them (to re-queue)."""
        jobs, self._unstarted = self._unstarted, []
        return jobs

    def _replace(self, child: _Child, done: list[Outcome], cut: Job | None = None) -> _Child | None:
        """Account for a dead child's jobs, and start another in its place.

        ``cut`` is a job whose end the caller records (killed for its time
        limit, or terminated). Jobs the child never started are re-queued.
        One it started without reporting its end either ran when it died or
        finished just before, its outcome lost: an ``acks_late`` one is
        delivered again, any other ends in ``WorkerLostError``.
        """
        child.process.join()
        code = child.process.exitcode
        jobs = list(child.jobs)
        first_unstarted = min(child.unstarted_from(), len(jobs))
        started, never = jobs[:first_unstarted], jobs[first_unstarted:]
        how = (
            f"signal {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exit code {code}"
        )
        for job in started:
            if job is cut:
                continue
            c = job.claimed
            logger.error(
                "child process %s died (%s) while running %s[%s]",
                child.process.pid,
                how,
                c.name,
                c.id,
            )
            if c.acks_late and c.attempt - c.retries < settings.MAX_REDELIVERIES:
                self._unstarted.append(job)  # acks_late: deliver it again
            else:
                done.append(
                    lost(
                        c,
                        "djtasks.exceptions.WorkerLostError",
                        f"the worker's child process died ({how}) while running this task",
                    )
                )
        self._unstarted.extend(never)
        child.jobs.clear()
        child.pipe.close()
        if child.retiring:
            return None  # shrunk away: not replaced
        return self._spawn()

    def running(self) -> list[Job]:
        return [j for c in self._children for j in c.jobs] + self._unstarted

    def executing(self) -> list[Job]:
        return [c.jobs[i] for c in self._children if (i := c.running_index()) is not None]

    def check_limits(self) -> list[Outcome]:
        """Kill children past their task's hard time limit; their tasks fail."""
        now = time.monotonic()
        out: list[Outcome] = []
        for i, child in enumerate(self._children):
            at = child.running_index()
            if at is None:
                continue
            job = child.jobs[at]
            if not job.time_limit or now - child.progress[1] < job.time_limit:
                continue
            # Its outcome may have arrived just now: read before judging.
            child.read(out)
            at = child.running_index()
            if at is None or child.jobs[at] is not job:
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
            self._children[i] = self._replace(child, out, cut=job)
        self._children = [c for c in self._children if c is not None]
        return out

    def stop(self, cold: bool = False) -> tuple[list[Job], list[Job]]:
        running: list[Job] = []
        waiting: list[Job] = self.take_unstarted()
        for child in self._children:
            if cold:
                child.process.kill()
        for child in self._children:
            if cold:
                child.process.join()
                child.read(self._late)  # finished before the kill: collect() returns them
                jobs = list(child.jobs)
                first_unstarted = min(child.unstarted_from(), len(jobs))
                running.extend(jobs[:first_unstarted])
                waiting.extend(jobs[first_unstarted:])
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
