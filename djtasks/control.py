"""Remote control, the sending side: what ``manage.py taskctl`` does.

A command for workers is a :class:`~djtasks.models.ControlCommand` row. On
PostgreSQL the transaction that inserts it also sends ``NOTIFY
djtasks_control``, so idle workers answer at once; elsewhere workers find it
by polling (every quarter of a second when they cannot be woken). Each
worker writes one :class:`~djtasks.models.ControlReply`; :func:`broadcast`
collects them until every worker it expects has answered or the timeout
passes. A command expires shortly after its sender stops waiting, so a worker
started later never runs it; answered and expired commands are deleted by
the senders.

Settings that outlive a worker (paused queues, rate and time limits) are
stored in rows first (:class:`~djtasks.models.PausedQueue`,
:class:`~djtasks.models.TaskType`); the command that follows only makes the
running workers re-read them now instead of within a second. Workers started
later read the rows.

Task rows are written only through :mod:`djtasks.queue` (``revoke``,
``purge``).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, Q, Value
from django.db.models.functions import Now
from django.utils import timezone

from . import queue, states
from .conf import settings
from .registry import tasks as registry
from .worker.remote import CONTROL_CHANNEL

#: Seconds :func:`broadcast` waits for replies unless told otherwise.
DEFAULT_TIMEOUT = 1.0
#: A command expires this long after its sender stops waiting for replies.
EXPIRY_GRACE = 1.0

#: ``taskctl inspect`` methods: they read, and change nothing.
INSPECT_COMMANDS = ("active", "reserved", "scheduled", "revoked", "registered", "stats", "ping")
#: ``taskctl control`` commands.
CONTROL_COMMANDS = (
    "shutdown",
    "pool_grow",
    "pool_shrink",
    "add_consumer",
    "cancel_consumer",
    "rate_limit",
    "time_limit",
)

_RATE = re.compile(r"^\d+(\.\d+)?/[smh]$")
#: What ``rate_limit TASK RATE`` accepts to drop an override.
RATE_RESET = ("0", "none", "off", "")


class RemoteControlError(Exception):
    """A remote-control request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class Reply:
    """One worker's answer: ``value`` if it did what was asked, else ``error``."""

    worker: str
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.value} if self.ok else {"error": self.error}


@dataclass(frozen=True)
class Replies:
    """What came back from a command: the replies by worker name, and the
    workers that were expected to answer and did not."""

    command: str
    replies: dict[str, Reply]
    missing: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.replies)

    @property
    def errors(self) -> dict[str, str]:
        return {w: r.error for w, r in self.replies.items() if r.error is not None}


# -- sending -------------------------------------------------------------------------


def broadcast(
    command: str,
    arguments: dict[str, Any] | None = None,
    destination: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    before_send: Any = None,
) -> Replies:
    """Send ``command`` to the workers named in ``destination`` (all when empty)
    and collect their replies for up to ``timeout`` seconds.

    Returns early once every expected worker has answered: the destination's
    names, or the workers :func:`status` shows online. ``timeout=0`` sends
    without waiting (the result is then empty). ``before_send`` is called in
    the sending transaction first (to store what the command announces).

    :raises RemoteControlError: inside ``transaction.atomic()`` with a
        timeout: workers cannot see the command before the caller commits.
    """
    conn = queue.connection()
    if timeout > 0 and conn.in_atomic_block:
        raise RemoteControlError(
            "remote control cannot wait for replies inside transaction.atomic(): the "
            "workers see the command only once it commits (pass timeout=0, or send it "
            "after the commit)"
        )
    names = sorted({d for d in destination or () if d})
    expected = set(names) if names else {w.name for w in status() if w.state == ONLINE}
    command_id = _send(command, arguments or {}, names, timeout, before_send)
    if timeout <= 0:
        return Replies(command, {})
    replies = _collect(command_id, timeout, expected)
    if expected and expected <= replies.keys():
        _delete(command_id)  # nobody else will answer it
    return Replies(command, replies, sorted(expected - replies.keys()))


def _send(
    command: str,
    arguments: dict[str, Any],
    destination: list[str],
    timeout: float,
    before_send: Any,
) -> uuid.UUID:
    from .models import ControlCommand

    conn = queue.connection()
    alias = queue.db_alias()
    # Expiry on the database's clock, which is also the one workers judge it
    # by: hosts whose clocks disagree still agree on it.
    ttl = dt.timedelta(seconds=max(timeout, 0.0) + EXPIRY_GRACE)
    expires = ExpressionWrapper(
        Now() + Value(ttl, output_field=DurationField()), output_field=DateTimeField()
    )
    with transaction.atomic(using=alias):
        cleanup()
        if before_send is not None:
            before_send()
        row = ControlCommand.objects.using(alias).create(
            command=command, arguments=arguments, destination=destination, expires_at=expires
        )
        if queue.is_postgres(conn):
            with conn.cursor() as cursor:
                # Delivered when this transaction commits, with the row.
                cursor.execute("SELECT pg_notify(%s, %s)", [CONTROL_CHANNEL, str(row.id)])
    return row.id


def _collect(command_id: uuid.UUID, timeout: float, expected: set[str]) -> dict[str, Reply]:
    from .models import ControlReply

    deadline = time.monotonic() + timeout
    interval = 0.005
    replies: dict[str, Reply] = {}
    while True:
        for worker, reply in (
            ControlReply.objects.using(queue.db_alias())
            .filter(command_id=command_id)
            .values_list("worker", "reply")
        ):
            reply = reply if isinstance(reply, dict) else {}
            replies[worker] = (
                Reply(worker, error=str(reply["error"]))
                if "error" in reply
                else Reply(worker, value=reply.get("ok"))
            )
        left = deadline - time.monotonic()
        if (expected and expected <= replies.keys()) or left <= 0:
            return dict(sorted(replies.items()))
        time.sleep(min(interval, left))
        interval = min(interval * 2, 0.05)


def _delete(command_id: uuid.UUID) -> None:
    from .models import ControlCommand

    ControlCommand.objects.using(queue.db_alias()).filter(pk=command_id).delete()


def cleanup() -> int:
    """Delete expired commands and their replies; return how many commands."""
    from .models import ControlCommand

    _, by_model = (
        ControlCommand.objects.using(queue.db_alias()).filter(expires_at__lte=Now()).delete()
    )
    return by_model.get(ControlCommand._meta.label, 0)


# -- inspect and control ---------------------------------------------------------------


def inspect(
    method: str, destination: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Replies:
    """Ask the workers ``method`` (one of :data:`INSPECT_COMMANDS`)."""
    if method not in INSPECT_COMMANDS:
        raise RemoteControlError(
            f"unknown inspect method {method!r}; choose from {', '.join(INSPECT_COMMANDS)}"
        )
    return broadcast(method, {}, destination, timeout)


def shutdown(destination: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Replies:
    """Warm shutdown: workers finish their running tasks, give back the rest, exit."""
    return broadcast("shutdown", {}, destination, timeout)


def pool_grow(
    n: int = 1, destination: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Replies:
    return broadcast("pool_grow", {"n": _count(n)}, destination, timeout)


def pool_shrink(
    n: int = 1, destination: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Replies:
    return broadcast("pool_shrink", {"n": _count(n)}, destination, timeout)


def add_consumer(
    queue_name: str, destination: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Replies:
    """Make workers claim from ``queue_name`` too (until they restart)."""
    return broadcast("add_consumer", {"queue": _queue_name(queue_name)}, destination, timeout)


def cancel_consumer(
    queue_name: str, destination: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Replies:
    """Make workers stop claiming from ``queue_name`` (until they restart)."""
    return broadcast("cancel_consumer", {"queue": _queue_name(queue_name)}, destination, timeout)


@dataclass(frozen=True)
class LimitChange:
    """What :func:`rate_limit` or :func:`time_limit` stored, the replies, and a
    note when the change cannot take effect as the caller may expect."""

    task_name: str
    replies: Replies
    note: str = ""


def rate_limit(
    task_name: str,
    rate: str,
    destination: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> LimitChange:
    """Set the cluster-wide rate limit of ``task_name`` (``"10/s"``, ``"100/m"``,
    ``"1000/h"``); ``"0"`` or ``"none"`` goes back to the task's own.

    Stored in the task's :class:`~djtasks.models.TaskType` row, so every
    worker, including those started later, applies it. The cluster-wide
    limiter governs only tasks declared with ``rate_limit`` or
    ``concurrency_limit`` (their rows are claimed through it); for any other
    task the override is stored but has no effect, and the returned note says
    so.
    """
    task = _registered(task_name)
    rate = str(rate).strip()
    if rate.lower() in RATE_RESET:
        rate = ""
    elif not _RATE.match(rate):
        raise RemoteControlError(
            f"rate must look like '10/s', '100/m' or '1000/h' (or 0 to reset), not {rate!r}"
        )
    note = ""
    if task.rate_limit is None and task.concurrency_limit is None:
        note = (
            f"{task_name} is declared without rate_limit or concurrency_limit, so its "
            "tasks are not claimed through the cluster-wide limiter: the override is "
            "stored but has no effect until the task declares one "
            "(e.g. @task(rate_limit=...))."
        )

    def store() -> None:
        _store_task_type(task_name, rate_limit=rate)

    replies = broadcast(
        "rate_limit",
        {"task_name": task_name, "rate": rate},
        destination,
        timeout,
        before_send=store,
    )
    return LimitChange(task_name, replies, note)


def time_limit(
    task_name: str,
    soft: float | str | None,
    hard: float | str | None,
    destination: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> LimitChange:
    """Set the soft and hard time limits (seconds) of ``task_name`` for its next
    runs on every worker; 0 or None removes an override (the task's own limit,
    or the worker's default, applies again). Tasks already running keep theirs.
    """
    _registered(task_name)
    soft_s, hard_s = _limit_seconds("soft", soft), _limit_seconds("hard", hard)
    if soft_s and hard_s and soft_s > hard_s:
        raise RemoteControlError(
            f"the soft limit ({soft_s:g} s) must not exceed the hard limit ({hard_s:g} s)"
        )

    def store() -> None:
        _store_task_type(task_name, soft_time_limit=soft_s, time_limit=hard_s)

    replies = broadcast(
        "time_limit",
        {"task_name": task_name, "soft": soft_s, "hard": hard_s},
        destination,
        timeout,
        before_send=store,
    )
    return LimitChange(task_name, replies)


def _store_task_type(name: str, **values: Any) -> None:
    from .models import TaskType

    # update_or_create locks the row, and never touches rate_tat (the limiter's).
    TaskType.objects.using(queue.db_alias()).update_or_create(name=name, defaults=values)


# -- revoke ---------------------------------------------------------------------------


@dataclass
class RevokeReport:
    """The fate of each id given to :func:`revoke`."""

    #: Had not started: now REVOKED, will not run.
    revoked: list[str] = field(default_factory=list)
    #: Was running: the worker named killed it; it ends REVOKED.
    terminated: dict[str, str] = field(default_factory=dict)
    #: Handed to a busy child of the worker named: killed as soon as it starts.
    terminating: dict[str, str] = field(default_factory=dict)
    #: Could not be revoked, and why.
    failed: dict[str, str] = field(default_factory=dict)
    replies: Replies | None = None


def revoke(
    task_ids: Iterable[str],
    terminate: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    reason: str = "revoked with taskctl",
) -> RevokeReport:
    """Revoke tasks: those not started end REVOKED at once and never run.

    With ``terminate``, a running task is killed by the worker running it (its
    prefork child is replaced) and ends REVOKED; that worker is asked directly.
    """
    from .models import TaskRecord

    ids = _task_ids(task_ids)
    report = RevokeReport()
    report.revoked = queue.revoke(ids, reason, timezone.now())
    rest = [i for i in ids if i not in set(report.revoked)]
    rows = {
        str(pk): (state, worker)
        for pk, state, worker in TaskRecord.objects.using(queue.db_alias())
        .filter(pk__in=rest)
        .values_list("pk", "state", "worker")
    }
    running: dict[str, str] = {}
    for task_id in rest:
        state, worker = rows.get(task_id, (None, ""))
        if state is None:
            report.failed[task_id] = "no task with this id"
        elif state in states.READY_STATES:
            report.failed[task_id] = f"already finished ({state})"
        elif not terminate:
            report.failed[task_id] = f"already started on {worker}; add --terminate to kill it"
        else:
            running[task_id] = worker
    if not running:
        return report
    replies = broadcast(
        "revoke",
        {"task_ids": sorted(running), "terminate": True},
        sorted(set(running.values())),
        timeout,
    )
    report.replies = replies
    for task_id, worker in running.items():
        reply = replies.replies.get(worker)
        if reply is None:
            report.failed[task_id] = f"running on {worker}, which did not reply"
        elif not reply.ok:
            report.failed[task_id] = f"{worker}: {reply.error}"
        elif task_id in (reply.value or {}).get("terminated", ()):
            report.terminated[task_id] = worker
        elif task_id in (reply.value or {}).get("terminating", ()):
            report.terminating[task_id] = worker
        else:
            report.failed[task_id] = f"no longer running on {worker} (it just finished?)"
    return report


# -- pause and resume -------------------------------------------------------------------


def pause(queue_name: str, by: str = "", timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, Replies]:
    """Stop every worker claiming from ``queue_name`` until :func:`resume`.

    Its tasks stay PENDING (workers give back those they had claimed but not
    started); running ones finish. Returns whether it was not paused before,
    and the workers' replies.
    """
    from .models import PausedQueue

    name = _queue_name(queue_name)
    changed = [False]

    def store() -> None:
        _, changed[0] = PausedQueue.objects.using(queue.db_alias()).get_or_create(
            name=name, defaults={"paused_by": by[:255]}
        )

    replies = broadcast("pause", {"queue": name}, None, timeout, before_send=store)
    return changed[0], replies


def resume(queue_name: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, Replies]:
    """Let workers claim from ``queue_name`` again; returns whether it was paused."""
    from .models import PausedQueue

    name = _queue_name(queue_name)
    changed = [False]

    def store() -> None:
        deleted, _ = PausedQueue.objects.using(queue.db_alias()).filter(name=name).delete()
        changed[0] = bool(deleted)

    replies = broadcast("resume", {"queue": name}, None, timeout, before_send=store)
    return changed[0], replies


def paused() -> list[Any]:
    """The paused queues' rows (name, paused_at, paused_by), by name."""
    from .models import PausedQueue

    return list(PausedQueue.objects.using(queue.db_alias()).order_by("name"))


# -- purge ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """Tasks :func:`purge` would delete: all, and how many of them are scheduled later."""

    total: int
    scheduled: int


def waiting(queues: Sequence[str] | None = None) -> Waiting:
    """Count the PENDING and RETRY tasks in ``queues`` (every queue if None)."""
    from .models import TaskRecord

    qs = TaskRecord.objects.using(queue.db_alias()).filter(state__in=(states.PENDING, states.RETRY))
    if queues is not None:
        qs = qs.filter(queue__in=list(queues))
    now = timezone.now()
    counts = qs.aggregate(total=_count_all(), scheduled=_count_all(Q(eta__gt=now)))
    return Waiting(counts["total"] or 0, counts["scheduled"] or 0)


def purge(queues: Sequence[str] | None = None) -> int:
    """Delete the tasks waiting in ``queues`` (every queue if None); return how many.

    Claimed and running tasks are left alone. A purged task leaves no row, so
    a chord waiting for it never fires.
    """
    return queue.purge([_queue_name(q) for q in queues] if queues is not None else None)


def _count_all(condition: Q | None = None) -> Any:
    from django.db.models import Count

    return Count("pk", filter=condition)


# -- status -------------------------------------------------------------------------------

ONLINE, OFFLINE, STOPPED = "online", "offline", "stopped"


@dataclass(frozen=True)
class WorkerStatus:
    """A worker row, and whether the worker is online, offline (silent for more
    than two heartbeats: probably dead) or stopped (shut down cleanly)."""

    name: str
    state: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    pool: str
    processed: int
    started_at: dt.datetime
    last_seen: dt.datetime
    stopped_at: dt.datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "hostname": self.hostname,
            "pid": self.pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "pool": self.pool,
            "processed": self.processed,
            "started_at": self.started_at.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
        }


def heartbeat_interval() -> float:
    """Seconds between a worker's heartbeats (a quarter of the lease, at least 0.5)."""
    return max(0.5, float(settings.VISIBILITY_TIMEOUT) / 4)


#: :func:`status` lists stopped workers for this long after they stopped.
STOPPED_SHOWN = dt.timedelta(days=1)


def status(
    now: dt.datetime | None = None, since: dt.timedelta = STOPPED_SHOWN
) -> list[WorkerStatus]:
    """Every worker not stopped, and those stopped within ``since``; online first.

    Online: a heartbeat within the last two heartbeat intervals, and not stopped.
    """
    from .models import Worker

    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=2 * heartbeat_interval())
    rows = Worker.objects.using(queue.db_alias()).filter(
        Q(stopped_at__isnull=True) | Q(last_seen__gte=now - since)
    )
    found = []
    for w in rows:
        state = STOPPED if w.stopped_at else ONLINE if w.last_seen >= cutoff else OFFLINE
        found.append(
            WorkerStatus(
                w.name,
                state,
                w.hostname,
                w.pid,
                list(w.queues or []),
                w.concurrency,
                w.pool,
                w.processed,
                w.started_at,
                w.last_seen,
                w.stopped_at,
            )
        )
    order = {ONLINE: 0, OFFLINE: 1, STOPPED: 2}
    return sorted(found, key=lambda s: (order[s.state], s.name))


# -- validation -----------------------------------------------------------------------------


def _count(n: Any) -> int:
    try:
        value = int(n)
    except (TypeError, ValueError):
        value = 0
    if isinstance(n, bool) or str(value) != str(n).strip() or value < 1:
        raise RemoteControlError(f"N must be a whole number >= 1, not {n!r}")
    return value


def _queue_name(name: Any) -> str:
    name = str(name or "").strip()
    if not name or len(name) > 100:
        raise RemoteControlError(f"a queue name has 1 to 100 characters, not {name!r}")
    return name


def _registered(task_name: str) -> Any:
    if task_name not in registry:
        raise RemoteControlError(
            f"unknown task {task_name!r}: no task of that name is "
            "registered in this project (see `taskctl inspect "
            "registered`)"
        )
    return registry.get(task_name)


def _limit_seconds(which: str, value: Any) -> float | None:
    if value is None or str(value).strip().lower() in ("none", "off"):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise RemoteControlError(
            f"the {which} time limit must be a number of seconds >= 0 (0 removes it), not {value!r}"
        )
    return seconds or None


def _task_ids(task_ids: Iterable[str]) -> list[str]:
    ids = []
    for raw in task_ids:
        try:
            ids.append(str(uuid.UUID(str(raw).strip())))
        except ValueError:
            raise RemoteControlError(f"{raw!r} is not a task id (a UUID)") from None
    if not ids:
        raise RemoteControlError("give at least one task id")
    return list(dict.fromkeys(ids))
