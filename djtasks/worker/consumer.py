"""The worker's main loop: claim → run → record, until told to stop.

One thread owns the loop and every queue write (claims, starts, batched
outcomes, leases); the pool runs the tasks. The loop sleeps on the pool's
pipes, the PostgreSQL LISTEN socket and a signal pipe at once, so a finished
task, a new task or a Ctrl-C each wake it immediately.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from typing import Any

from django.db import DatabaseError, InterfaceError, connections
from django.utils import timezone

from .. import queue, signals, states
from ..conf import settings
from ..registry import tasks as registry
from ..request import Request
from .executor import send
from .failure_mail import FailureMailer
from .listener import Listener
from .pools import POOLS, Job, Pool, lost
from .remote import RemoteControl

logger = logging.getLogger("djtasks.worker")

_DB_ERRORS = (DatabaseError, InterfaceError)
#: Seconds between looks for control commands and paused queues without a
#: NOTIFY (on SQLite, or if one was lost).
CONTROL_POLL = 1.0
#: The same when nothing can wake the worker for a command (no LISTEN socket,
#: or a full pool, which does not listen): often enough for taskctl's default
#: 1 s reply wait.
CONTROL_POLL_UNWOKEN = 0.25
#: Seconds between deletions of finished rows past DJTASKS_RESULT_EXPIRES.
PRUNE_INTERVAL = 60.0


def default_hostname() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def expand_hostname(pattern: str) -> str:
    host = socket.gethostname()
    return (
        pattern.replace("%h", host)
        .replace("%n", host.split(".")[0])
        .replace("%p", str(os.getpid()))
        .replace("%i", str(os.getpid()))
    )


@dataclass
class WorkerOptions:
    queues: Sequence[str] = ("default",)
    concurrency: int = 2
    pool: str = "prefork"
    hostname: str = field(default_factory=default_hostname)
    prefetch_multiplier: int = 4
    poll_interval: float = 1.0
    lease_seconds: float = 60.0
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None  # KiB
    autoscale: tuple[int, int] | None = None  # (max, min) pool size
    max_tasks: int | None = None  # stop after this many (tests, benchmarks)
    burst: bool = False  # stop once the queues are empty


class Worker:
    """A ``taskworker`` process: see :meth:`run`."""

    def __init__(self, options: WorkerOptions, clock: Callable[[], Any] = timezone.now) -> None:
        self.options = options
        self.name = options.hostname
        self.now = clock
        extra = (
            {
                "max_tasks_per_child": options.max_tasks_per_child,
                "max_memory_per_child": options.max_memory_per_child,
            }
            if options.pool == "prefork"
            else {}
        )
        self.pool: Pool = POOLS[options.pool](options.concurrency, self.name, **extra)
        self.queues: list[str] = list(options.queues)
        self.paused: set[str] = set()
        self.started_at = time.time()
        self._born = clock()  # rows claimed since then under our name are ours
        self._reply_lost = False  # a turn failed: it may have committed unseen claims
        self.buffer: deque[queue.Claimed] = deque()
        self.pending: list[queue.Outcome] = []
        self.processed = 0
        self.stopping = False  # warm: finish running tasks, claim nothing more
        self.cold = False  # cold: stop now
        self.listener: Listener | None = None
        self._signal_r, self._signal_w = os.pipe()
        self._next_heartbeat = 0.0
        self._next_rescue = 0.0
        self._next_prune = time.monotonic() + 5.0  # not in the start-up rush
        self._db_backoff = 0.0
        self._down_since: float | None = None  # when the database errors began
        self._queues_empty = False
        self.overrides: dict[str, tuple[float | None, float | None]] = {}  # time limits
        self.remote = RemoteControl(self)
        self.mail_failures = FailureMailer(self.name)
        self._idle_since = time.monotonic()
        self._next_autoscale = 0.0
        self._next_control = 0.0
        self.limits: dict[str, queue.Limit] = {}  # rate limits and caps by task name
        self._rate_wake: Any = None  # when a rate limit next allows a run
        self._linger_until = 0.0
        self._limited_waiting = False  # rate-limited rows wait for their turn

    # -- the loop ------------------------------------------------------------

    def run(self) -> None:
        """Run until a signal (or ``max_tasks`` / ``burst``) stops the worker."""
        self._install_signals()
        queue.prepare_process_connection()
        self.pool.start()
        self.listener = Listener.for_worker(self.options.queues, self.options.poll_interval)
        self._renewer = self._start_renewer() if self.options.pool == "solo" else None
        send(signals.worker_ready, sender=self)
        logger.info("worker %s ready", self.name)
        try:
            while not self.cold:
                try:
                    self.step()
                except _DB_ERRORS as exc:
                    self._database_down(exc)
                    continue
                except Exception as exc:
                    # A bug of ours must not take the worker down with tasks
                    # in flight: log it, back off, carry on.
                    logger.exception("unexpected error in the worker loop")
                    self._database_down(exc)
                    continue
                if self.stopping and not self.pool.running() and not self.pending:
                    break
                self._db_backoff = 0.0
                self._down_since = None
        finally:
            self._shutdown()

    def step(self) -> None:
        """One turn: collect outcomes, then in one transaction record them,
        start buffered tasks and claim more; hand what may run to the pool;
        wait."""
        # Pending at once, not in a local: if anything below fails, they are
        # written by a later turn (not dropped), and their leases renewed meanwhile.
        self.pending.extend(self.pool.collect() + self.pool.check_limits())
        self._requeue_unstarted()
        if self._reply_lost:
            self._requeue_orphans()
        self.side_duties()
        to_start: list[queue.Claimed] = []
        limit = start = 0
        if not self.stopping:
            to_start = self._take_startable()
            limit, start = self._claim_size(self.pool.free() - len(to_start))
        self.settle([], to_start, limit, start)
        if not self.stopping:
            if self.limits and self._queues_empty:
                self.claim_limited()
            self._check_stop_conditions()
        self.wait()

    def settle(
        self,
        outcomes: list[queue.Outcome],
        to_start: list[queue.Claimed],
        limit: int = 0,
        start: int = 0,
    ) -> None:
        """Write outcomes (with any that failed to write earlier), mark
        ``to_start`` STARTED and claim up to ``limit`` more (``start`` of them
        STARTED at once) in one transaction, then hand what may run to the pool."""
        self.pending.extend(outcomes)
        batch, self.pending = self.pending, []
        queues = self._active_queues() if limit > 0 else []
        try:
            turned = queue.turn(
                batch,
                self.name,
                to_start,
                self.now(),
                queues,
                limit,
                start,
                self.options.lease_seconds,
            )
        except BaseException:
            self.pending = batch + self.pending  # written once the database is back
            self.buffer.extendleft(reversed(to_start))  # still RECEIVED: rolled back
            # Or not: the statement may have committed and only its reply
            # been lost, with rows claimed that this worker never saw.
            self._reply_lost = self._reply_lost or bool(queues)
            raise
        self.processed += len(batch)
        if batch:
            if logger.isEnabledFor(logging.INFO):
                for o in batch:
                    _log_outcome(o, self.name)
            for o in batch:
                if o.state == states.FAILURE and not o.traceback:
                    self._failed_outside_task(o)
            self.mail_failures(batch)
        if queues:
            self._queues_empty = len(turned.claimed) < limit
            self._received(turned.claimed)
        run: list[queue.Claimed] = []
        skipped = []
        for c in to_start:
            if c.id in turned.started:
                run.append(c)
            else:
                skipped.append(c)
        for c in turned.claimed:
            if c.started:
                run.append(c)
            else:
                self.buffer.append(c)
        if run:
            self.pool.submit_many([self._job(c) for c in run])
        if skipped:
            self._not_started(skipped)

    record = settle

    def _not_started(self, skipped: list[queue.Claimed]) -> None:
        # Revoked since the claim, or rescued and taken by another worker: not
        # ours to run. Or marked STARTED by an earlier settle that committed but
        # whose reply was lost (the connection dropped): still ours, never run,
        # so put it back now rather than let its lease run out into a
        # WorkerLostError.
        back = queue.requeue_running(self.name, skipped)
        if back:
            logger.warning(
                "re-queued %d task(s) an earlier write had already marked STARTED "
                "(its reply was lost); they never ran here",
                back,
            )
        for c in skipped:
            if back:
                logger.info("%s[%s] was not started here (revoked, or re-queued)", c.name, c.id)
            else:
                logger.info("%s[%s] was revoked before it started", c.name, c.id)

    def _requeue_orphans(self) -> None:
        n = queue.requeue_orphans(self.name, self._born, self.held_ids())
        self._reply_lost = False
        if n:
            logger.warning(
                "re-queued %d task(s) claimed by a statement whose reply was lost; "
                "they never ran here",
                n,
            )

    def _failed_outside_task(self, o: queue.Outcome) -> None:
        # Lost children and time limits end a task without its own code seeing
        # it: send task_failure from here so receivers hear of every failure.
        from .. import exceptions
        from ..result import rebuild_exception

        task = registry._tasks.get(o.task_name)
        # Only what the pool decides: rows refused before running (decode,
        # signature) already sent task_failure from the executor.
        if task is None or o.exc_type not in _POOL_FAILURES:
            return
        exc = rebuild_exception(o.exc_type, o.exc_message)
        if isinstance(exc, exceptions.DjtasksError):
            send(
                signals.task_failure,
                sender=task,
                task_id=o.task_id,
                exception=exc,
                args=[],
                kwargs={},
                traceback=None,
                einfo="",
            )

    def _claim_size(self, free: int) -> tuple[int, int]:
        """How many rows to claim now, and how many of them to start at once.

        Free slots are filled straight away (claimed STARTED). Beyond them the
        worker prefetches up to concurrency × prefetch multiplier tasks in
        all (RECEIVED, ``inspect reserved``), refilling only when the buffer
        can no longer feed every slot, so claims come in batches.
        """
        if self.buffer:
            return 0, 0  # the buffer still feeds every slot
        free = max(0, free)
        want = self.options.concurrency * self.options.prefetch_multiplier
        ahead = want - len(self.pool.running()) - free
        return max(free, free + ahead), free

    def claim_limited(self) -> None:
        """Claim rows of rate-limited or capped tasks into the buffer."""
        want = self.options.concurrency * self.options.prefetch_multiplier
        room = max(self.pool.free(), want - len(self.pool.running())) - len(self.buffer)
        if room <= 0:
            return
        limited, self._rate_wake = queue.claim_limited(
            self.name,
            self._active_queues(),
            room,
            self.now(),
            self.options.lease_seconds,
            self.limits,
        )
        self._limited_waiting = self._rate_wake is not None
        self._received(limited)
        self.buffer.extend(limited)

    def _received(self, claimed: list[queue.Claimed]) -> None:
        if not claimed or not signals.task_received.receivers:
            return
        for c in claimed:
            if c.name in registry:
                send(
                    signals.task_received,
                    sender=registry.get(c.name),
                    request=_request(c, self.name),
                )

    def _take_startable(self) -> list[queue.Claimed]:
        """Take as many buffered tasks as the pool has room for (revoking expired ones)."""
        free = self.pool.free()
        batch: list[queue.Claimed] = []
        while free > len(batch) and self.buffer:
            c = self.buffer.popleft()
            if c.expired:
                self._revoke_expired(c)
            else:
                batch.append(c)
        return batch

    def _requeue_unstarted(self) -> None:
        take = getattr(self.pool, "take_unstarted", None)
        jobs = take() if take else []
        if jobs:
            n = queue.requeue_running(self.name, [j.claimed for j in jobs])
            logger.warning("re-queued %d task(s) of a lost child (not started, or acks_late)", n)

    def wait(self) -> None:
        """Sleep until something can be done: an outcome, a wake-up, a signal, a poll."""
        if self.buffer and self.pool.free() > 0 and not self.stopping:
            return
        if not self.stopping and self.pool.free() > 0 and not self._queues_empty:
            return  # more work is waiting: keep claiming until the queues are empty
        waitables: list[Any] = [self._signal_r, *self.pool.waitables()]
        if self.listener is not None and not self.stopping and self.pool.free() > 0:
            waitables.extend(self.listener.waitables())
        timeout = min(self.options.poll_interval, self._until_side_duties())
        if time.monotonic() < self._linger_until:
            # Just woken by a NOTIFY: an enqueue that shared it (coalesced)
            # may commit a moment later, so look again soon before sleeping.
            timeout = min(timeout, 0.002)
        if self._rate_wake is not None:
            timeout = min(timeout, (self._rate_wake - self.now()).total_seconds())
            self._rate_wake = None
        ready = wait_for(waitables, timeout=max(0.0, timeout))
        if self._signal_r in ready:
            self._read_signals()
        if self.listener is not None and any(w in ready for w in self.listener.waitables()):
            wake = self.listener.drain()
            if wake.control:
                self._next_control = 0.0  # a control command or pause: answer now
            if wake.work:
                self._linger_until = time.monotonic() + 4 * queue.NOTIFY_COALESCE
        self._queues_empty = False

    # -- side duties ------------------------------------------------------------

    def side_duties(self) -> None:
        mono = time.monotonic()
        if self.options.autoscale and mono >= self._next_autoscale:
            self.autoscale(mono)
            self._next_autoscale = mono + 1.0
        if mono >= self._next_control:
            self.refresh_runtime_state()
            self.remote.poll()
            self._next_control = mono + self._control_poll()
        if mono >= self._next_heartbeat:
            self.heartbeat()
            self._next_heartbeat = mono + max(0.5, self.options.lease_seconds / 4)
        if mono >= self._next_prune and settings.RESULT_EXPIRES:
            pruned = queue.prune_expired(self.now(), settings.RESULT_EXPIRES)
            if pruned:
                logger.info(
                    "deleted %d finished task(s) older than DJTASKS_RESULT_EXPIRES (%ss)",
                    pruned,
                    settings.RESULT_EXPIRES,
                )
            self._next_prune = mono + PRUNE_INTERVAL
        if mono >= self._next_rescue:
            rescued = queue.rescue_expired(self.now())
            if rescued.requeued or rescued.lost:
                logger.warning(
                    "recovered tasks of stopped workers: %d re-queued, %d failed (WorkerLostError)",
                    rescued.requeued,
                    rescued.lost,
                )
            self._next_rescue = mono + max(1.0, self.options.lease_seconds / 2)

    def autoscale(self, mono: float) -> None:
        """``--autoscale MAX,MIN``: add processes while tasks wait for a slot;
        remove one after a few idle seconds, down to MIN."""
        high, low = self.options.autoscale or (0, 0)
        size = self.pool.concurrency
        busy = len(self.pool.running())
        if busy < size:
            self._idle_since = min(self._idle_since, mono)
        else:
            self._idle_since = mono
        if self.buffer and self.pool.free() == 0 and size < high:
            self.grow(min(high - size, len(self.buffer)))
            logger.info("autoscale: grew the pool to %d", self.pool.concurrency)
        elif not self.buffer and busy < size and size > low and mono - self._idle_since > 5:
            self.shrink(1)
            self._idle_since = mono
            logger.info("autoscale: shrank the pool to %d", self.pool.concurrency)

    def refresh_runtime_state(self) -> None:
        """Re-read what ``taskctl`` can change for the whole cluster: paused
        queues, and per task name rate limits and time limits."""
        self.paused = queue.paused_queues()
        types = queue.task_types()
        self.overrides = {
            name: (t.soft_time_limit, t.time_limit)
            for name, t in types.items()
            if t.soft_time_limit is not None or t.time_limit is not None
        }
        limits: dict[str, queue.Limit] = {}
        for name in registry.names():
            task = registry.get(name)
            rate = (
                types[name].rate_limit
                if name in types and types[name].rate_limit
                else task.rate_limit
            )
            if rate or task.concurrency_limit:
                limits[name] = queue.Limit(
                    queue.parse_rate(rate) if rate else None, task.concurrency_limit
                )
        self.limits = limits

    def heartbeat(self) -> None:
        now = self.now()
        if self.options.pool != "solo":
            queue.renew_leases(self.name, now, self.options.lease_seconds, self.held_ids())
        queue.worker_heartbeat(
            self.name,
            now,
            self.processed,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=list(self.queues),
            concurrency=self.pool.concurrency,
            pool=self.options.pool,
        )

    def held_ids(self) -> list[str]:
        """The rows this process knows it holds: claimed, running, or with an
        outcome still to write. Only their leases are renewed."""
        return (
            [c.id for c in list(self.buffer)]
            + [j.claimed.id for j in self.pool.running()]
            + [o.task_id for o in list(self.pending)]
        )

    def _control_poll(self) -> float:
        woken = (
            self.listener is not None and bool(self.listener.waitables()) and self.pool.free() > 0
        )
        return CONTROL_POLL if woken else CONTROL_POLL_UNWOKEN

    def _until_side_duties(self) -> float:
        return min(self._next_heartbeat, self._next_rescue, self._next_control) - time.monotonic()

    def _start_renewer(self) -> threading.Event:
        # The solo pool runs tasks on this thread; a small thread keeps the
        # leases alive meanwhile so a long task is not taken for lost.
        stop = threading.Event()
        interval = max(0.5, self.options.lease_seconds / 4)

        def renew() -> None:
            while not stop.wait(interval):
                try:
                    held = self.held_ids()
                except RuntimeError:  # the loop changed the buffer meanwhile: next time
                    continue
                try:
                    queue.renew_leases(self.name, self.now(), self.options.lease_seconds, held)
                except _DB_ERRORS as exc:
                    logger.warning("lease renewal failed: %s", exc)
            connections.close_all()

        threading.Thread(target=renew, name="djtasks-leases", daemon=True).start()
        return stop

    # -- helpers ---------------------------------------------------------------

    def _active_queues(self) -> list[str]:
        return [q for q in self.queues if q not in self.paused]

    def _job(self, c: queue.Claimed) -> Job:
        """The job for a claimed task, with its limits: the call's own (headers),
        else a ``taskctl time_limit`` override, else the task's, else the worker's."""
        task = registry._tasks.get(c.name)
        # A row written by hand may hold any JSON as headers (the executor fails it).
        limits = c.headers.get("timelimit") if isinstance(c.headers, dict) else None
        soft, hard = (
            limits if isinstance(limits, list | tuple) and len(limits) == 2 else (None, None)
        )
        override = self.overrides.get(c.name)
        if soft is None:
            soft = (override and override[0]) or (task.soft_time_limit if task else None)
        if hard is None:
            hard = (override and override[1]) or (task.time_limit if task else None)
        return Job(c, soft or settings.TASK_SOFT_TIME_LIMIT, hard or settings.TASK_TIME_LIMIT)

    # -- what remote control may ask (see worker/remote.py) --------------------

    def add_queue(self, name: str) -> bool:
        if name in self.queues:
            return False
        self.queues.append(name)
        if self.listener is not None:
            self.listener.queues.add(name)
        return True

    def remove_queue(self, name: str) -> bool:
        if name not in self.queues or len(self.queues) == 1:
            return False
        self.queues.remove(name)
        if self.listener is not None:
            self.listener.queues.discard(name)
        # Claimed rows of that queue go back at once for other workers.
        keep = [c for c in self.buffer if c.queue != name]
        drop = [c for c in self.buffer if c.queue == name]
        self.buffer.clear()
        self.buffer.extend(keep)
        queue.release(self.name, drop)
        return True

    def grow(self, n: int) -> int:
        self.pool.grow(n)
        self.options.concurrency = self.pool.concurrency
        return self.pool.concurrency

    def shrink(self, n: int) -> int:
        self.pool.shrink(n)
        self.options.concurrency = self.pool.concurrency
        return self.pool.concurrency

    def terminate(self, task_id: str) -> bool:
        """Stop a running task now (prefork): it ends REVOKED."""
        outcome = self.pool.terminate(task_id)
        if outcome is None:
            return False
        self.pending.append(outcome)
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "hostname": self.name,
            "pid": os.getpid(),
            "pool": self.options.pool,
            "concurrency": self.pool.concurrency,
            "queues": list(self.queues),
            "paused": sorted(self.paused),
            "processed": self.processed,
            "running": len(self.pool.executing()),
            "reserved": len(self.pool.running()) - len(self.pool.executing()) + len(self.buffer),
            "uptime": round(time.time() - self.started_at, 1),
            "prefetch_multiplier": self.options.prefetch_multiplier,
        }

    def active(self) -> list[dict[str, Any]]:
        """The tasks running right now."""
        return [_describe(j.claimed) for j in self.pool.executing()]

    def reserved(self) -> list[dict[str, Any]]:
        """The tasks held but not running: queued in a pool slot (already
        STARTED), then claimed and waiting in the worker (RECEIVED)."""
        executing = {id(j) for j in self.pool.executing()}
        queued = [j.claimed for j in self.pool.running() if id(j) not in executing]
        return [_describe(c) for c in [*queued, *self.buffer]]

    def _revoke_expired(self, c: queue.Claimed) -> None:
        revoked = queue.revoke(
            [c.id], "expired before it could start", self.now(), attempt=c.attempt
        )
        if revoked:
            logger.info("%s[%s] REVOKED (expired)", c.name, c.id)
            task = registry._tasks.get(c.name)
            send(
                signals.task_revoked,
                sender=task,
                request=_request(c, self.name),
                terminated=False,
                signum=None,
                expired=True,
            )

    def _check_stop_conditions(self) -> None:
        if self.options.max_tasks is not None and self.processed >= self.options.max_tasks:
            self.begin_warm_shutdown("processed max_tasks")
        elif (
            self.options.burst
            and self._queues_empty
            and not self.buffer
            and not self.pool.running()
            and not self._limited_waiting
        ):
            self.begin_warm_shutdown("queues empty (burst mode)")

    def _database_down(self, exc: BaseException) -> None:
        lease = self.options.lease_seconds
        # Never wait longer than half a lease to try again, so leases are
        # renewed soon after the database is back.
        self._db_backoff = min(30.0, lease / 2, (self._db_backoff or 0.5) * 2)
        logger.error("database error: %s; retrying in %.1fs", exc, self._db_backoff)
        mono = time.monotonic()
        if self._down_since is None:
            self._down_since = mono
        elif mono - self._down_since >= lease / 4:
            # No worker could renew its leases meanwhile: give every live one
            # a full lease to renew before judging any row abandoned, or the
            # first worker back would fail the running tasks of all the others.
            self._next_rescue = max(self._next_rescue, mono + self._db_backoff + lease)
        for conn in connections.all(initialized_only=True):
            conn.close()
        if self.listener is not None:
            self.listener.reset()
        deadline = time.monotonic() + self._db_backoff
        while not self.cold and time.monotonic() < deadline:
            ready = wait_for([self._signal_r], timeout=max(0.0, deadline - time.monotonic()))
            if ready:
                self._read_signals()
            self.pending.extend(self.pool.collect() + self.pool.check_limits())

    # -- signals and shutdown --------------------------------------------------

    def _install_signals(self) -> None:
        os.set_blocking(self._signal_w, False)
        os.set_blocking(self._signal_r, False)
        signal.set_wakeup_fd(self._signal_w)
        self._saved_handlers = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
        }

    def _restore_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig, handler in getattr(self, "_saved_handlers", {}).items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        pass  # the wake-up fd carries the signal number to the loop

    def _read_signals(self) -> None:
        try:
            data = os.read(self._signal_r, 64)
        except BlockingIOError:
            return
        for signum in data:
            if signum == signal.SIGQUIT or (
                self.stopping and signum in (signal.SIGTERM, signal.SIGINT)
            ):
                self.begin_cold_shutdown()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self.begin_warm_shutdown(signal.Signals(signum).name)

    def begin_warm_shutdown(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        logger.warning(
            "warm shutdown (%s): finishing %d running task(s); send the signal again to stop now",
            why,
            len(self.pool.running()),
        )
        self._release_buffer()

    def begin_cold_shutdown(self) -> None:
        logger.warning("cold shutdown: stopping running tasks now")
        self.stopping = True
        self.cold = True

    def _release_buffer(self) -> None:
        buffered = list(self.buffer)
        self.buffer.clear()
        try:
            n = queue.release(self.name, buffered)
        except _DB_ERRORS as exc:
            logger.error(
                "could not release %d claimed tasks (%s); their leases will "
                "expire and return them to the queue",
                len(buffered),
                exc,
            )
            return
        if n:
            logger.info("returned %d claimed task(s) to the queue", n)

    def _shutdown(self) -> None:
        if self._renewer is not None:
            self._renewer.set()
        self._release_buffer()
        outcomes = self.pool.collect()  # the solo pool's last outcome waits here
        cut, unstarted = self.pool.stop(cold=self.cold)
        outcomes += self.pool.collect()  # any that finished just before a cold stop
        for job in cut:
            if job.claimed.acks_late:
                unstarted.append(job)  # acks_late: run it again elsewhere
                continue
            outcomes.append(
                lost(
                    job.claimed,
                    queue.WORKER_LOST,
                    f"worker {self.name} was stopped (cold shutdown) while running this task",
                )
            )
        try:
            self.settle(outcomes, [])
            queue.requeue_running(self.name, [j.claimed for j in unstarted])
            queue.worker_stopped(self.name, self.now(), self.processed)
        except _DB_ERRORS as exc:
            logger.error("could not record the final outcomes (%s); leases will recover them", exc)
        if self.listener is not None:
            self.listener.close()
        signal.set_wakeup_fd(-1)
        send(signals.worker_shutdown, sender=self)
        self._restore_signals()
        logger.info("worker %s stopped after %d task(s)", self.name, self.processed)


_POOL_FAILURES = frozenset(
    {"djtasks.exceptions.WorkerLostError", "djtasks.exceptions.TimeLimitExceeded"}
)


def _request(c: queue.Claimed, hostname: str) -> Request:
    """What a parent-side signal receiver learns of a claimed task (its
    arguments are decoded only where it runs)."""
    return Request.for_claimed(c, hostname)


def _describe(c: queue.Claimed) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "queue": c.queue,
        "priority": c.priority,
        "retries": c.retries,
        "attempt": c.attempt,
    }


def _log_outcome(o: queue.Outcome, worker: str = "") -> None:
    runtime = f"{o.runtime:.4f}s" if o.runtime is not None else "-"
    # For structured logs (djtasks.logging.JSONFormatter).
    extra = {
        "task_id": o.task_id,
        "task_name": o.task_name,
        "state": o.state,
        "runtime": o.runtime,
        "worker": worker,
    }
    if o.state == states.SUCCESS:
        logger.info("%s[%s] %s in %s", o.task_name, o.task_id, o.state, runtime, extra=extra)
    elif o.state == states.RETRY:
        logger.warning(
            "%s[%s] %s at %s after %s: %s",
            o.task_name,
            o.task_id,
            o.state,
            o.retry_eta.isoformat() if o.retry_eta else "?",
            runtime,
            o.exc_message or o.exc_type,
            extra=extra,
        )
    else:
        logger.error(
            "%s[%s] %s in %s: %s: %s",
            o.task_name,
            o.task_id,
            o.state,
            runtime,
            o.exc_type,
            o.exc_message,
            extra=extra,
        )
