"""A live stream of task state changes: what ``taskctl events`` prints.

Events are read from the rows, which already hold every transition with its
time: ``created_at`` (PENDING), ``received_at`` (RECEIVED), ``started_at``
(STARTED), ``done_at`` (SUCCESS, FAILURE, REVOKED), a running task's
``custom_state`` (``update_state``), and a RETRY row's ``retries``. Each
poll reads, through indexes, only:

- the rows created since the last poll: a primary-key range (ids are UUIDv7);
- the rows held by workers now (RECEIVED, STARTED): the partial held index;
- the rows finished since the last poll: the ``(state, done_at)`` index;
- the rows waiting to retry: the ``(state, done_at)`` index, at most
  :data:`RETRY_SCAN_LIMIT`;
- the worker rows started or stopped since then.

Each poll looks :data:`LOOKBACK` seconds further back than the last one, for
rows committed late or stamped by a host whose clock is a little behind,
and skips the events it already printed. So the workers write nothing extra
for the stream, and it misses no transition it can see in the rows: a task
that starts and finishes between two polls shows RECEIVED, STARTED and
SUCCESS all the same. What the rows do not keep is not shown: a retry whose
row is claimed again before the next poll shows as its retries count, and
the tasks of a queue purged at once leave no trace.

On PostgreSQL the stream sleeps on ``LISTEN``: ``djtasks`` (the NOTIFY of
every enqueue) and ``djtasks_events``, which workers send after writing
outcomes, at most ten times a second each (:data:`djtasks.queue.EVENTS_CHANNEL`);
it polls once a second anyway. On SQLite it polls.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from . import queue, states
from .conf import settings
from .dashboard import uuid7_floor
from .models import TaskRecord, Worker

logger = logging.getLogger("djtasks.events")

#: Seconds each poll looks back past the previous one (late commits, clock skew).
LOOKBACK = 5.0
#: Rows read per query of a poll at most (a burst beyond it is partly skipped).
POLL_ROWS = 10_000
#: RETRY rows looked at per poll at most.
RETRY_SCAN_LIMIT = 10_000
#: Seconds between polls when nothing wakes the stream.
POLL_INTERVAL = 1.0
SQLITE_POLL_INTERVAL = 0.5
#: After a wake-up, poll again this much later: workers coalesce their NOTIFYs.
TRAILING_POLL = 0.15

WORKER_ONLINE, WORKER_OFFLINE = "WORKER-ONLINE", "WORKER-OFFLINE"
_ORDER = {
    s: i
    for i, s in enumerate(
        (
            states.PENDING,
            states.RECEIVED,
            states.STARTED,
            states.RETRY,
            states.SUCCESS,
            states.FAILURE,
            states.REVOKED,
        )
    )
}
_FIELDS = (
    "id",
    "name",
    "queue",
    "state",
    "custom_state",
    "worker",
    "retries",
    "created_at",
    "eta",
    "received_at",
    "started_at",
    "done_at",
    "runtime",
    "exc_type",
    "exc_message",
)


@dataclass(frozen=True)
class Event:
    """One transition: a task (``kind="task"``) or a worker (``kind="worker"``)."""

    kind: str
    state: str
    timestamp: dt.datetime
    id: str
    name: str = ""
    queue: str = ""
    worker: str = ""
    retries: int = 0
    runtime: float | None = None
    eta: dt.datetime | None = None
    exc_type: str = ""
    exc_message: str = ""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.kind,
            "state": self.state,
            "timestamp": self.timestamp.isoformat(),
            "id": self.id,
        }
        if self.kind == "task":
            body.update(
                name=self.name,
                queue=self.queue,
                worker=self.worker or None,
                retries=self.retries,
                runtime=self.runtime,
                eta=self.eta.isoformat() if self.eta else None,
            )
            if self.exc_type:
                body.update(exc_type=self.exc_type, exc_message=self.exc_message)
        return body

    def line(self) -> str:
        """One line for people, like ``celery events --dump``."""
        when = timezone.localtime(self.timestamp).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        if self.kind == "worker":
            return f"{when} {self.state:<9} {self.id}"
        text = f"{when} {self.state:<9} {self.name}[{self.id}]"
        details = []
        if self.worker and self.state != states.PENDING:
            details.append(f"worker={self.worker}")
        details.append(f"queue={self.queue}")
        if self.eta is not None:
            details.append(f"eta={self.eta.isoformat()}")
        if self.retries:
            details.append(f"retries={self.retries}")
        if self.runtime is not None and self.state in states.READY_STATES | {states.RETRY}:
            details.append(f"runtime={self.runtime:.4f}s")
        if self.exc_type:
            message = " ".join(self.exc_message.split())
            if len(message) > 200:
                message = message[:199] + "…"
            details.append(f"error={self.exc_type.rpartition('.')[2]}: {message}")
        return f"{text} {' '.join(details)}"


@dataclass
class Filter:
    """Which events to show: task name globs, queues, states (none: all)."""

    names: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)

    def __call__(self, event: Event) -> bool:
        if self.states and event.state not in self.states:
            return False
        if event.kind != "task":
            return not (self.names or self.queues)
        if self.queues and event.queue not in self.queues:
            return False
        return not self.names or any(fnmatch.fnmatchcase(event.name, p) for p in self.names)


def _tasks() -> Any:
    return TaskRecord.objects.using(queue.db_alias())


class EventSource:
    """Turns the rows into events, poll by poll.

    Each poll first reads a small signature of every row in its scans
    (state, attempt, retries, custom state: no timestamps, which cost most to
    decode), then the full rows of only those whose signature changed since
    the previous poll; so rows waiting to retry or running for long are
    read in full once.

    :param since: also report what happened since then (the first poll
        reaches back to it); by default the stream starts now.
    :param lookback: seconds each later poll reaches back past the previous.
    """

    def __init__(self, since: dt.datetime | None = None, lookback: float = LOOKBACK) -> None:
        self.lookback = dt.timedelta(seconds=lookback)
        self._start = since
        self._previous: dt.datetime | None = None
        self._seen: dict[tuple[str, str, dt.datetime], dt.datetime] = {}
        self._signatures: dict[Any, tuple[Any, ...]] = {}

    def poll(self, now: dt.datetime | None = None) -> list[Event]:
        """The events seen since the previous poll, oldest first."""
        now = now or timezone.now()
        if self._previous is None:
            start = self._start or now
        else:
            start = self._previous - self.lookback
        signatures = self._scan(start, now)
        changed = [pk for pk, sig in signatures.items() if self._signatures.get(pk) != sig]
        custom = {
            pk
            for pk in changed
            if signatures[pk][3]
            and (self._signatures.get(pk) or (None,) * 4)[3] != signatures[pk][3]
        }
        self._signatures = signatures
        found: list[Event] = []
        for i in range(0, len(changed), 1000):
            for row in _tasks().filter(pk__in=changed[i : i + 1000]).values(*_FIELDS):
                _row_events(row, start, row["id"] in custom, now, found)
        self._workers(start, found)
        fresh = []
        for event in found:
            key = (event.id, event.state, event.timestamp)
            if key not in self._seen:
                self._seen[key] = event.timestamp
                fresh.append(event)
        # What is older than the next poll's start cannot come back: forget it.
        cutoff = now - self.lookback - dt.timedelta(seconds=1)
        self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
        self._previous = now
        fresh.sort(key=lambda e: (e.timestamp, _ORDER.get(e.state, 2.5)))
        return fresh

    def _scan(self, start: dt.datetime, now: dt.datetime) -> dict[Any, tuple[Any, ...]]:
        """Signatures of the rows that may hold new events, from four index reads."""
        sig = ("id", "state", "attempt", "retries", "custom_state")
        scans = (
            # Created since start: a primary-key range (UUIDv7 ids).
            _tasks().filter(
                pk__gte=uuid7_floor(start - dt.timedelta(seconds=1)),
                pk__lt=uuid7_floor(now + dt.timedelta(minutes=1)),
                created_at__gte=start,
            )[:POLL_ROWS],
            # Held by workers now: the partial held index.
            _tasks().filter(state__in=(states.RECEIVED, states.STARTED))[:POLL_ROWS],
            # Finished since start: the (state, done_at) index.
            _tasks().filter(state__in=states.READY_STATES, done_at__gte=start)[:POLL_ROWS],
            # Waiting to retry: the (state, done_at) index, bounded.
            # retry written at T has eta >= T, so rows due before start have none to show.
            _tasks().filter(state=states.RETRY, eta__gte=start)[:RETRY_SCAN_LIMIT],
        )
        found: dict[Any, tuple[Any, ...]] = {}
        for qs in scans:
            for pk, *rest in qs.values_list(*sig):
                found[pk] = tuple(rest)
        return found

    def _workers(self, start: dt.datetime, out: list[Event]) -> None:
        rows = (
            Worker.objects.using(queue.db_alias())
            .filter(Q(started_at__gte=start) | Q(stopped_at__gte=start))
            .values("name", "started_at", "stopped_at")[:POLL_ROWS]
        )
        for row in rows:
            if row["started_at"] >= start:
                out.append(Event("worker", WORKER_ONLINE, row["started_at"], row["name"]))
            if row["stopped_at"] is not None and row["stopped_at"] >= start:
                out.append(Event("worker", WORKER_OFFLINE, row["stopped_at"], row["name"]))


def _row_events(
    row: dict[str, Any],
    start: dt.datetime,
    custom_changed: bool,
    now: dt.datetime,
    out: list[Event],
) -> None:
    """The events a row's timestamps show since ``start``."""
    state = row["state"]
    created = row["created_at"]
    if created >= start and not (row["done_at"] is not None and row["done_at"] <= created):
        # (A row made final at once, like a chain step that will not run, has no PENDING.)
        later = row["eta"] if row["eta"] and row["eta"] > created else None
        out.append(_task_event(row, states.PENDING, created, eta=later))
    if state == states.PENDING:
        return
    if row["received_at"] is not None and row["received_at"] >= start:
        out.append(_task_event(row, states.RECEIVED, row["received_at"]))
    if row["started_at"] is not None and row["started_at"] >= start:
        out.append(_task_event(row, states.STARTED, row["started_at"]))
    if state in states.READY_STATES and row["done_at"] is not None and row["done_at"] >= start:
        out.append(_task_event(row, state, row["done_at"]))
    elif state == states.RETRY and row["started_at"] is not None:
        # The retry is written when the run ends: its start plus its runtime.
        at = row["started_at"] + dt.timedelta(seconds=row["runtime"] or 0.0)
        if at >= start:
            out.append(_task_event(row, states.RETRY, at, eta=row["eta"]))
    elif state == states.STARTED and row["custom_state"] and custom_changed:
        out.append(_task_event(row, row["custom_state"], now))


def _task_event(
    row: dict[str, Any], state: str, at: dt.datetime, eta: dt.datetime | None = None
) -> Event:
    final = state in states.READY_STATES or state == states.RETRY
    return Event(
        kind="task",
        state=state,
        timestamp=at,
        id=str(row["id"]),
        name=row["name"],
        queue=row["queue"],
        worker=row["worker"] or "",
        retries=row["retries"],
        runtime=row["runtime"] if final else None,
        eta=eta,
        exc_type=row["exc_type"] if final and state != states.SUCCESS else "",
        exc_message=row["exc_message"] if final and state != states.SUCCESS else "",
    )


# -- following --------------------------------------------------------------------------


class Waker:
    """PostgreSQL: a LISTEN connection to sleep on until something changes."""

    CHANNELS = (queue.NOTIFY_CHANNEL, queue.EVENTS_CHANNEL)

    def __init__(self) -> None:
        url = settings.LISTEN_DATABASE_URL
        if url:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)
        else:
            django_conn = queue.connection()
            self.conn = django_conn.get_new_connection(django_conn.get_connection_params())
            self.conn.autocommit = True
        for channel in self.CHANNELS:
            self.conn.execute(f"LISTEN {channel}")

    def wait(self, timeout: float) -> bool:
        """Sleep until a notification or ``timeout``; say whether one came."""
        ready, _, _ = select.select([self.conn.fileno()], [], [], max(0.0, timeout))
        if not ready:
            return False
        pgconn = self.conn.pgconn
        pgconn.consume_input()
        woke = False
        while pgconn.notifies() is not None:
            woke = True
        return woke

    def close(self) -> None:
        self.conn.close()


def follow(
    source: EventSource,
    emit: Callable[[Event], None],
    *,
    interval: float | None = None,
    stop: Callable[[], bool] = lambda: False,
    notify: bool = True,
) -> None:
    """Poll ``source`` and pass each new event to ``emit`` until ``stop()`` is true.

    On PostgreSQL (with ``notify``) it sleeps on LISTEN between polls, and
    polls at least every ``interval`` seconds; elsewhere every ``interval``.
    """
    waker = None
    if notify and queue.is_postgres():
        try:
            waker = Waker()
        except Exception as exc:
            logger.warning("LISTEN failed (%s): polling instead", exc)
    if interval is None:
        interval = POLL_INTERVAL if waker is not None else SQLITE_POLL_INTERVAL
    trailing: float | None = None
    try:
        while not stop():
            for event in source.poll():
                emit(event)
                if stop():
                    return
            if waker is None:
                time.sleep(interval)
                continue
            timeout = interval if trailing is None else max(0.0, trailing - time.monotonic())
            if waker.wait(timeout):
                trailing = time.monotonic() + TRAILING_POLL
                time.sleep(0.02)  # let a burst of notifications gather into one poll
            elif trailing is not None:
                trailing = None
    finally:
        if waker is not None:
            waker.close()


# -- taskctl events ------------------------------------------------------------------------


def _positive(value: str) -> float:
    import argparse

    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 10**7:
        raise argparse.ArgumentTypeError(f"takes seconds > 0, not {value!r}")
    return seconds


def _count(value: str) -> int:
    import argparse

    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number >= 1, not {value!r}")
    return int(value)


def _names(values: list[str]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def add_parser(sub: Any, *parents: Any) -> None:
    """Add ``events`` to ``taskctl``'s subcommands."""
    p = sub.add_parser(
        "events",
        parents=list(parents),
        help="print task state changes as they happen (celery events --dump)",
    )
    p.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="GLOB",
        help="only tasks whose name matches (repeat or comma-separate)",
    )
    p.add_argument(
        "-Q",
        "--queue",
        action="append",
        default=[],
        metavar="QUEUE",
        help="only tasks of these queues",
    )
    p.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="STATE",
        help="only these states (PENDING ... REVOKED, WORKER-ONLINE, WORKER-OFFLINE)",
    )
    p.add_argument(
        "--since",
        type=_positive,
        metavar="SECONDS",
        help="first print what happened in the last SECONDS",
    )
    p.add_argument(
        "--interval",
        type=_positive,
        metavar="SECONDS",
        help="poll at least this often (default 1 on PostgreSQL, 0.5 on SQLite)",
    )
    p.add_argument("--max-events", type=_count, metavar="N", help="stop after N events")
    p.add_argument("--duration", type=_positive, metavar="SECONDS", help="stop after SECONDS")


def run_command(command: Any, options: dict[str, Any]) -> None:
    """``taskctl events``: print events until interrupted (or a limit)."""
    wanted = Filter(
        names=_names(options["name"]),
        queues=_names(options["queue"]),
        states=[s.upper() for s in _names(options["state"])],
    )
    since = options.get("since")
    source = EventSource(since=timezone.now() - dt.timedelta(seconds=since) if since else None)
    as_json = options.get("json", False)
    limit = options.get("max_events")
    deadline = time.monotonic() + options["duration"] if options.get("duration") else None
    printed = [0]

    def emit(event: Event) -> None:
        if not wanted(event):
            return
        command.stdout.write(json.dumps(event.as_json()) if as_json else event.line())
        command.stdout.flush()
        printed[0] += 1

    def stop() -> bool:
        return (limit is not None and printed[0] >= limit) or (
            deadline is not None and time.monotonic() >= deadline
        )

    if not as_json:
        how = "LISTEN/NOTIFY" if queue.is_postgres() else "polling"
        command.stderr.write(f"Following task events ({how}); Ctrl-C to stop.")
    try:
        follow(source, emit, interval=options.get("interval"), stop=stop)
    except KeyboardInterrupt:
        pass
