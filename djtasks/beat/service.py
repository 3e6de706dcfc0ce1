"""The beat service: plan each due entry, fire it in one transaction, sleep, repeat."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from .. import queue, schedules, signals
from ..conf import settings
from ..exceptions import DjtasksError
from ..ids import uuid7
from ..models import PeriodicTask, ScheduleTick
from ..registry import tasks as registry
from .election import CHANNEL, DB_ERRORS, Elector, LostLeadership, make_elector
from .entries import sync_settings

logger = logging.getLogger("djtasks.beat")

TICK_RETENTION = dt.timedelta(days=1)
BATCH = 100


def notify_beat(using: str | None = None) -> None:
    """Wake the leading beat (PostgreSQL): schedule rows changed.

    Sent inside the caller's transaction, so delivered when it commits.
    """
    conn = connections[using or queue.db_alias()]
    if conn.vendor == "postgresql":
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])


# -- planning (no database) -------------------------------------------------------------


def _following(
    row: PeriodicTask,
    after: dt.datetime,
    anchor: dt.datetime | None,
) -> dt.datetime | None:
    """The entry's first run time after ``after``, within its start and end."""
    schedule = row.get_schedule()
    when = schedule.next_after(after, anchor=anchor, tz=row.get_zone())
    if when is not None and row.end_at is not None and when > row.end_at:
        return None
    return when


def first_run(row: PeriodicTask, now: dt.datetime) -> dt.datetime | None:
    """When a new (or changed, or re-enabled) entry runs first.

    Intervals count from ``start_at`` when set, else from now; crontabs take
    their first time after now (and not before ``start_at``); a one-off runs
    at its time, even if that has passed (then ``catch_up`` decides).
    """
    start = row.start_at
    schedule = row.get_schedule()
    if isinstance(schedule, schedules.Clocked):
        first: dt.datetime | None = schedule.at
    elif isinstance(schedule, schedules.Interval):
        if start is None:
            first = now + schedule.every
        elif start > now:
            first = start
        else:
            first = schedule.next_after(now, anchor=start)
    else:
        after = now if start is None or start <= now else start - dt.timedelta(microseconds=1)
        first = schedule.next_after(after, tz=row.get_zone())
    if first is not None and row.end_at is not None and first > row.end_at:
        return None
    return first


@dataclass(frozen=True)
class Plan:
    """What to do with an entry whose ``next_run_at`` (``due``) has come."""

    due: dt.datetime
    fire: bool  # enqueue a run now
    missed: bool  # the run is late (catch_up applied)
    next_run_at: dt.datetime | None  # None: no run left, the entry is disabled


def plan(row: PeriodicTask, now: dt.datetime, grace: float) -> Plan:
    """Decide about the due entry ``row`` at ``now``: fire or not, and the next run."""
    due = row.next_run_at
    assert due is not None  # noqa: S101 - callers plan only due rows
    if row.end_at is not None and due > row.end_at:
        return Plan(due, fire=False, missed=False, next_run_at=None)
    following = _following(row, due, anchor=due)
    missed = (following is not None and following <= now) or (now - due).total_seconds() > grace
    fire = not missed or row.catch_up == PeriodicTask.CATCH_UP_ONCE
    if following is not None and following <= now:
        following = _following(row, now, anchor=due)
    return Plan(due, fire=fire, missed=missed, next_run_at=following)


def upcoming(row: PeriodicTask, n: int, now: dt.datetime) -> list[dt.datetime]:
    """The next ``n`` runs of ``row`` (for the admin); empty if disabled or invalid."""
    if not row.enabled:
        return []
    try:
        when = row.next_run_at or first_run(row, now)
        times = []
        while when is not None and len(times) < n:
            times.append(when)
            when = _following(row, when, anchor=when)
    except ValueError:
        return []
    return times


# -- sending -------------------------------------------------------------------------


def send(
    row: PeriodicTask,
    task_id: Any = None,
    headers: dict[str, Any] | None = None,
) -> Any:
    """Enqueue one run of ``row`` through its registered task; return the ``AsyncResult``.

    :raises djtasks.exceptions.NotRegistered: the task is not registered here.
    """
    task = registry.get(row.task)
    options: dict[str, Any] = {}
    if row.expires is not None:
        options["expires"] = row.expires  # else the task's own
    return task.apply_async(
        row.args,
        row.kwargs,
        queue=row.queue or None,
        priority=row.priority,
        task_id=task_id,
        headers={"periodic_task": row.name, **(headers or {})},
        **options,
    )


# -- the service -------------------------------------------------------------------------


def default_name() -> str:
    return f"beat.{os.getpid()}@{socket.gethostname()}"


class Beat:
    """The ``taskbeat`` service: :meth:`run` until a signal; :meth:`tick` is one pass.

    ``clock`` returns the current aware time; tests inject one.
    """

    def __init__(
        self,
        name: str | None = None,
        max_interval: float | None = None,
        clock: Callable[[], dt.datetime] = timezone.now,
        elector: Elector | None = None,
    ) -> None:
        self.name = name or default_name()
        self.max_interval = float(max_interval or settings.BEAT_MAX_LOOP_INTERVAL)
        self.lease = float(settings.BEAT_LEASE)
        self.grace = float(settings.BEAT_GRACE)
        self.now = clock
        self.elector = elector or make_elector(self.name, self.lease)
        self.stopping = False
        self.sent = 0
        self._signal_r = self._signal_w = -1
        self._saved_signals: dict[Any, Any] = {}
        self._next_prune = 0.0
        self._db_backoff = 0.0

    @property
    def alias(self) -> str:
        return queue.db_alias()

    # -- the loop ----------------------------------------------------------------

    def run(self) -> None:
        """Lead or follow until SIGTERM/SIGINT; leadership is released on the way out."""
        self._install_signals()
        queue.prepare_process_connection()
        signals.beat_init.send(sender=self)
        logger.info("beat: Starting... (%s, %s election)", self.name, self.elector.mode)
        try:
            while not self.stopping:
                try:
                    timeout = self.step()
                    self._db_backoff = 0.0
                except DB_ERRORS as exc:
                    timeout = self._database_down(exc)
                self.wait(timeout)
        finally:
            self.elector.release()
            self._restore_signals()
            logger.info("beat: %s stopped after sending %d task(s)", self.name, self.sent)

    def step(self) -> float:
        """Lead (or try to); fire what is due; return how long to sleep."""
        now = self.now()
        if not self.elector.leader:
            if not self.elector.acquire(now):
                return min(1.0, self.lease / 5)
            logger.info("beat: %s leads now (%s)", self.name, self.elector.mode)
            sync_settings()
        elif not self.elector.confirm(now):
            logger.warning("beat: %s no longer leads", self.name)
            return 0.0
        wake = self.tick(now)
        self._prune(now)
        if wake is None:
            timeout = self.max_interval
        else:
            timeout = (wake - self.now()).total_seconds()
        return max(0.0, min(timeout, self.max_interval, self.elector.renew_in()))

    def wait(self, timeout: float) -> None:
        if self.stopping or timeout <= 0:
            return
        waitables = self.elector.waitables()
        fds = [*waitables, *([self._signal_r] if self._signal_r >= 0 else [])]
        if not fds:
            time.sleep(timeout)
            return
        ready = wait_for(fds, timeout=timeout)
        if self._signal_r in ready:
            self._read_signals()
        if any(w in ready for w in waitables):
            self.elector.drain()

    # -- one pass ------------------------------------------------------------------

    def tick(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """Fire every due entry at ``now``; return when the next one is due."""
        now = now or self.now()
        rows = PeriodicTask.objects.using(self.alias)
        due = list(
            rows.filter(enabled=True)
            .filter(Q(next_run_at__isnull=True) | Q(next_run_at__lte=now))
            .order_by(F("next_run_at").asc(nulls_first=True))[:BATCH]
        )
        for row in due:
            self.apply_entry(row, now)
        if len(due) == BATCH:
            return now
        return rows.filter(enabled=True, next_run_at__isnull=False).aggregate(m=Min("next_run_at"))[
            "m"
        ]

    def apply_entry(self, row: PeriodicTask, now: dt.datetime) -> None:
        """Initialise, fire or skip one due entry (at most one run)."""
        try:
            if row.next_run_at is None:
                first = first_run(row, now)
                if first is None:
                    self._finish(row, None, "it has no run left")
                    return
                if not self._rows(row).filter(next_run_at__isnull=True).update(next_run_at=first):
                    return
                row.next_run_at = first
                if first > now:
                    return
            decision = plan(row, now, self.grace)
        except ValueError as exc:
            self._finish(row, row.next_run_at, f"its schedule is invalid: {exc}")
            return
        if decision.fire and row.task not in registry:
            logger.error(
                "beat: %s: task %r is not registered here; run due %s not sent",
                row.name,
                row.task,
                decision.due.isoformat(),
            )
            decision = Plan(decision.due, False, decision.missed, decision.next_run_at)
        try:
            task_id = self._commit(row, decision, now)
        except IntegrityError:
            logger.warning(
                "beat: %s: the run due %s was already sent (by another beat?)",
                row.name,
                decision.due.isoformat(),
            )
            return
        except LostLeadership:
            logger.warning(
                "beat: %s lost leadership; run due %s of %s left to the leader",
                self.name,
                decision.due.isoformat(),
                row.name,
            )
            self.elector.reset()
            return
        except (TypeError, ValueError, DjtasksError) as exc:
            logger.error("beat: %s: could not send %s: %s", row.name, row.task, exc)
            decision = Plan(decision.due, False, decision.missed, decision.next_run_at)
            task_id = self._commit(row, decision, now)
        if task_id is None:
            return  # another beat (or an edit) moved the entry on first
        self._log(row, decision, now, task_id)

    def _commit(self, row: PeriodicTask, decision: Plan, now: dt.datetime) -> str | None:
        """One transaction: move the entry on, insert the tick, enqueue the task."""
        nxt = decision.next_run_at
        changes: dict[str, Any] = {"next_run_at": nxt}
        if nxt is None:
            changes["enabled"] = False
        if decision.fire:
            changes.update(last_run_at=now, total_run_count=F("total_run_count") + 1)
        with transaction.atomic(using=self.alias):
            # First statement a write: on SQLite that takes the write lock at once.
            # Only if the entry still holds the due time this beat read.
            if not self._rows(row).filter(next_run_at=decision.due, enabled=True).update(**changes):
                return None
            self.elector.fence(now)
            if not decision.fire:
                return ""
            task_id = uuid7()
            ScheduleTick.objects.using(self.alias).create(
                periodic_task_id=row.pk,
                due_at=decision.due,
                task_id=task_id,
                enqueued_at=now,
                beat=self.name,
            )
            send(row, task_id=task_id, headers={"due": decision.due.isoformat()})
        self.sent += 1
        return str(task_id)

    def _rows(self, row: PeriodicTask) -> Any:
        return PeriodicTask.objects.using(self.alias).filter(pk=row.pk)

    def _finish(self, row: PeriodicTask, due: dt.datetime | None, why: str) -> None:
        self._rows(row).filter(next_run_at=due).update(enabled=False, next_run_at=None)
        logger.warning("beat: %s disabled: %s", row.name, why)

    def _log(
        self, row: PeriodicTask, decision: Plan, now: dt.datetime, task_id: str | None
    ) -> None:
        late = (now - decision.due).total_seconds()
        if decision.fire:
            note = f" (late by {late:.1f}s; catch_up=once)" if decision.missed else ""
            logger.info(
                "beat: sent %s (%s) [%s] due %s%s",
                row.name,
                row.task,
                task_id,
                decision.due.isoformat(),
                note,
            )
        elif decision.missed:
            logger.warning(
                "beat: %s: skipped the run due %s (late by %.1fs; catch_up=skip)",
                row.name,
                decision.due.isoformat(),
                late,
            )
        if decision.next_run_at is None:
            logger.info("beat: %s has no run left; disabled", row.name)

    def _prune(self, now: dt.datetime) -> None:
        mono = time.monotonic()
        if mono < self._next_prune:
            return
        self._next_prune = mono + 600
        old = ScheduleTick.objects.using(self.alias).filter(enqueued_at__lt=now - TICK_RETENTION)
        while ids := list(old.values_list("pk", flat=True)[:5000]):
            ScheduleTick.objects.using(self.alias).filter(pk__in=ids).delete()

    # -- process plumbing -------------------------------------------------------------

    def _database_down(self, exc: BaseException) -> float:
        self._db_backoff = min(30.0, (self._db_backoff or 0.25) * 2)
        logger.error("beat: database error: %s; retrying in %.1fs", exc, self._db_backoff)
        self.elector.reset()
        for conn in connections.all(initialized_only=True):
            conn.close()
        return self._db_backoff

    def _install_signals(self) -> None:
        self._signal_r, self._signal_w = os.pipe()
        os.set_blocking(self._signal_r, False)
        os.set_blocking(self._signal_w, False)
        self._saved_signals = {
            "wakeup": signal.set_wakeup_fd(self._signal_w),
            **{sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)},
        }

    def _restore_signals(self) -> None:
        saved = self._saved_signals
        if not saved:
            return
        signal.set_wakeup_fd(saved.pop("wakeup"))
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        os.close(self._signal_r)
        os.close(self._signal_w)
        self._signal_r = self._signal_w = -1
        self._saved_signals = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True  # the wake-up fd ends the current wait

    def _read_signals(self) -> None:
        try:
            data = os.read(self._signal_r, 64)
        except BlockingIOError:
            return
        for signum in data:
            logger.info("beat: %s received; stopping", signal.Signals(signum).name)
