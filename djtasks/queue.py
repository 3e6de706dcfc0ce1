"""THE write path: every statement that changes a task row lives here.

Enqueue, claim, start, complete, retry, revoke, release, renew, rescue.
The hot statements are raw SQL (one round trip each, no model instances);
the rest use the ORM. Each function takes the current time from its caller
(``now``) so workers and tests control the clock.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` and wakes workers with
NOTIFY (delivered only when the enqueueing transaction commits). SQLite has
one writer at a time: claims run in ``BEGIN IMMEDIATE`` transactions and
workers poll.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from . import states
from .conf import settings
from .models import TaskRecord, Worker

#: The NOTIFY channel workers LISTEN on; the payload is the queue name.
NOTIFY_CHANNEL = "djtasks"
#: The channel ``taskctl events`` LISTENs on: a worker wrote outcomes or started tasks.
EVENTS_CHANNEL = "djtasks_events"
#: A worker process sends it at most this often: PostgreSQL serialises the
#: commits that NOTIFY, and one in every settle cut 8 concurrent settlers from
#: ~1,100 to ~180 commits/s, while one per 0.1 s stayed within noise.
EVENTS_NOTIFY_INTERVAL = 0.1
_last_events_notify = 0.0
#: From this many rows, an enqueue on PostgreSQL uses COPY rather than INSERT.
COPY_THRESHOLD = 50

_T = TaskRecord._meta.db_table
_WAITING = "('PENDING', 'RETRY')"
_HELD = "('RECEIVED', 'STARTED')"
# The same test written so that the planner cannot match it to the partial
# index of held rows: the statements that update a few rows by id must look
# them up by primary key. Matched, the planner walks the whole held index
# (expecting one row there, it finds every dead entry since the last vacuum).
_HELD_OPAQUE = f"COALESCE(t.state, '') IN {_HELD}"
WORKER_LOST = "djtasks.exceptions.WorkerLostError"
REVOKED_ERROR = "djtasks.exceptions.TaskRevokedError"


def db_alias() -> str:
    return settings.DATABASE


def connection() -> BaseDatabaseWrapper:
    return connections[db_alias()]


def is_postgres(conn: BaseDatabaseWrapper | None = None) -> bool:
    return (conn or connection()).vendor == "postgresql"


def prepare_process_connection() -> None:
    """Open the queue's connection for a long-lived process (worker, beat)."""
    conn = connection()
    conn.ensure_connection()
    if conn.vendor == "sqlite":
        with conn.cursor() as cursor:
            # WAL lets the web process, beat and workers read while one writes.
            cursor.execute("PRAGMA journal_mode=WAL")


# -- values -------------------------------------------------------------------


@dataclass
class Message:
    """A task call ready to be inserted: what ``apply_async`` produces."""

    id: uuid.UUID
    name: str
    queue: str
    priority: int
    content_type: str
    payload: str
    eta: dt.datetime
    created_at: dt.datetime
    headers: dict[str, Any] = field(default_factory=dict)
    expires: dt.datetime | None = None
    acks_late: bool = False
    ignore_result: bool = False
    parent_id: uuid.UUID | None = None
    root_id: uuid.UUID | None = None
    group_id: uuid.UUID | None = None
    unique_key: str | None = None
    unique_until: dt.datetime | None = None
    concurrency_key: str | None = None
    # A row that is final from the start (a chain step that will never run).
    state: str = states.PENDING
    exc_type: str = ""
    exc_message: str = ""
    done_at: dt.datetime | None = None


@dataclass
class Claimed:
    """A row a worker has claimed: everything needed to run it."""

    db_id: Any  # the id as the database returned it, for writing back
    id: str
    name: str
    queue: str
    priority: int
    content_type: str
    payload: str
    headers: dict[str, Any]
    retries: int
    attempt: int
    acks_late: bool
    ignore_result: bool
    expired: bool
    eta: Any
    parent_id: str | None
    root_id: str | None
    group_id: str | None
    started: bool = False  # marked STARTED by its claim: it may run now


@dataclass
class Outcome:
    """How one run of a task ended; written back by :func:`complete`."""

    task_id: str
    attempt: int
    state: str  # SUCCESS, FAILURE, RETRY or REVOKED
    done_at: dt.datetime
    runtime: float | None = None
    result: str | None = None
    result_content_type: str = ""
    exc_type: str = ""
    exc_message: str = ""
    traceback: str = ""
    retry_eta: dt.datetime | None = None
    new_payload: str | None = None  # retry(args=..., kwargs=...) replaces the arguments
    task_name: str = ""  # for logs only
    # Workflow: rows to insert with this outcome (only if it is applied), chain
    # steps that will not run (canvas.Skipped), the chord this task is in.
    followups: Any = None
    skipped: list[Any] = field(default_factory=list)
    chord_id: str | None = None
    root_id: str | None = None
    # Set by the executor once it has planned the row's workflow. An outcome
    # made elsewhere (a child process died, a hard time limit, terminate) has
    # not: its row's workflow is settled from the row's headers.
    workflow_planned: bool = False

    @property
    def has_workflow(self) -> bool:
        return (
            bool(self.followups and self.followups.messages)
            or bool(self.skipped)
            or self.chord_id is not None
            or self._ends_unplanned
        )

    @property
    def _ends_unplanned(self) -> bool:
        return not self.workflow_planned and self.state in (states.FAILURE, states.REVOKED)


# -- helpers ------------------------------------------------------------------

_INSERT_FIELDS = [
    "id",
    "name",
    "queue",
    "priority",
    "state",
    "content_type",
    "payload",
    "headers",
    "eta",
    "expires",
    "acks_late",
    "ignore_result",
    "created_at",
    "parent_id",
    "root_id",
    "group_id",
    "unique_key",
    "unique_until",
    "concurrency_key",
    "exc_type",
    "exc_message",
    "done_at",
]
_FIELDS = {f: TaskRecord._meta.get_field(f) for f in _INSERT_FIELDS}
_DEFAULTS_SQL = "retries, attempt, worker, result_content_type, custom_state, traceback"


def _prep(conn: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    return _FIELDS[name].get_db_prep_save(value, conn)


def _dt(conn: BaseDatabaseWrapper, value: dt.datetime | None) -> Any:
    return _FIELDS["eta"].get_db_prep_save(value, conn)


def _db_id(conn: BaseDatabaseWrapper, value: Any) -> Any:
    return _FIELDS["id"].get_db_prep_save(
        value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)), conn
    )


def _in_list(conn: BaseDatabaseWrapper, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """SQL for ``IN (...)`` / ``= ANY(...)`` over ``values``, and its params."""
    if is_postgres(conn):
        return "= ANY(%s)", [list(values)]
    return "IN (" + ", ".join(["%s"] * len(values)) + ")", list(values)


@contextmanager
def _write_transaction(conn: BaseDatabaseWrapper) -> Iterator[Any]:
    """A short write transaction with a cursor.

    On SQLite it is ``BEGIN IMMEDIATE``, taking the write lock up front so a
    read-then-write can never fail on a stale snapshot; elsewhere Django's
    ``atomic``.
    """
    if conn.vendor == "sqlite" and conn.get_autocommit() and not conn.in_atomic_block:
        conn.ensure_connection()
        with conn.cursor() as cursor:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
    else:
        with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
            yield cursor


@contextmanager
def _hot_cursor(conn: BaseDatabaseWrapper) -> Iterator[Any]:
    """A cursor for the hot statements (claim, settle, enqueue).

    On PostgreSQL a psycopg cursor with server-side binding whose statements
    are prepared once per connection: planning the claim costs more than
    running it. ``DJTASKS_PREPARE_STATEMENTS = False`` turns that off (for
    PgBouncer < 1.21 in transaction mode). Errors surface as Django's
    database exceptions, as from any Django cursor.
    """
    if not is_postgres(conn) or not settings.PREPARE_STATEMENTS:
        with conn.cursor() as cursor:
            yield _Plain(cursor)
        return
    import psycopg

    conn.ensure_connection()
    raw = conn.connection
    if raw.prepare_threshold is None:
        # Django switches psycopg's statement cache off by default, and with
        # it off ``prepare=True`` is silently ignored. A threshold that no
        # query reaches turns the cache on for our statements only.
        raw.prepare_threshold = _NEVER_AUTO_PREPARE
    with conn.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        yield _Prepared(cursor)


#: psycopg prepares a statement of its own accord after this many runs.
_NEVER_AUTO_PREPARE = 2**62


class _Plain:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self.cursor.execute(sql, params)

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall()


class _Prepared(_Plain):
    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self.cursor.execute(sql, params, prepare=True)


def _json_value(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        return json.loads(value)
    return value


def _uuid_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(uuid.UUID(str(value)))


# -- enqueue --------------------------------------------------------------------


def enqueue(messages: Sequence[Message]) -> list[str]:
    """Insert task rows (one statement) and wake the workers of their queues.

    Inside the caller's transaction the rows, and the wake-up, become visible
    only when it commits; a rollback leaves nothing behind.

    Returns the ids of already unfinished tasks that hold the ``unique_key``
    of a message (that message is then not inserted); empty otherwise.
    """
    if not messages:
        return []
    conn = connection()
    plain = [m for m in messages if m.unique_key is None]
    notify = _notify_due(conn, {m.queue for m in messages})
    if len(plain) >= COPY_THRESHOLD and is_postgres(conn):
        _copy(conn, plain, notify)
        notify = []
    elif plain:
        _insert(conn, plain, "", notify)
        notify = []
    existing: list[str] = []
    for m in messages:
        if m.unique_key is not None:
            found = _insert_unique(conn, m, notify)
            if found is None:
                notify = []
            else:
                existing.append(found)
    return existing


def enqueue_bulk(messages: Sequence[Message], chunk_size: int = 1000) -> None:
    """Insert many rows: multi-row INSERTs in one transaction, one NOTIFY per queue."""
    if any(m.unique_key is not None for m in messages):
        raise ValueError("bulk enqueue does not take unique_key; enqueue those one by one")
    conn = connection()
    if is_postgres(conn):
        _copy(conn, messages, sorted({m.queue for m in messages}))
        return
    with transaction.atomic(using=conn.alias):
        for start in range(0, len(messages), chunk_size):
            chunk = messages[start : start + chunk_size]
            last = start + chunk_size >= len(messages)
            _insert(conn, chunk, "", sorted({m.queue for m in messages}) if last else [])


def _copy(conn: BaseDatabaseWrapper, messages: Sequence[Message], notify: Sequence[str]) -> None:
    """PostgreSQL: COPY the rows in (far cheaper than INSERT for thousands),
    then NOTIFY the queues ``notify``, all in one transaction."""
    import psycopg

    columns = [
        *_INSERT_FIELDS,
        "retries",
        "attempt",
        "worker",
        "result_content_type",
        "custom_state",
        "traceback",
    ]
    with transaction.atomic(using=conn.alias), conn.wrap_database_errors:
        conn.ensure_connection()
        with psycopg.Cursor(conn.connection) as cursor:
            headers: dict[int, str] = {}  # bulk calls share one headers dict
            with cursor.copy(f"COPY {_T} ({', '.join(columns)}) FROM STDIN") as copy:
                for m in messages:
                    key = id(m.headers)
                    if key not in headers:
                        headers[key] = json.dumps(m.headers)
                    copy.write_row(
                        (
                            m.id,
                            m.name,
                            m.queue,
                            m.priority,
                            m.state,
                            m.content_type,
                            m.payload,
                            headers[key],
                            m.eta,
                            m.expires,
                            m.acks_late,
                            m.ignore_result,
                            m.created_at,
                            m.parent_id,
                            m.root_id,
                            m.group_id,
                            m.unique_key,
                            m.unique_until,
                            m.concurrency_key,
                            m.exc_type,
                            m.exc_message,
                            m.done_at,
                            0,
                            0,
                            "",
                            "",
                            "",
                            "",
                        )
                    )
            for q in notify:
                cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, q])


def _row_values(m: Message) -> list[Any]:
    """A message's INSERT values, in ``_INSERT_FIELDS`` order, unconverted."""
    return [getattr(m, name) for name in _INSERT_FIELDS]


# Fields whose values the model converts for the database (UUIDs, datetimes,
# JSON); the rest go as they are.
_CONVERTED = [
    (i, _FIELDS[name])
    for i, name in enumerate(_INSERT_FIELDS)
    if _FIELDS[name].get_internal_type() in ("UUIDField", "DateTimeField", "JSONField")
]
_HEADERS = _INSERT_FIELDS.index("headers")
_UUIDS = [i for i, f in _CONVERTED if f.get_internal_type() == "UUIDField"]


def _row_generic(conn: BaseDatabaseWrapper, m: Message) -> list[Any]:
    """A message's INSERT values, converted by the model's fields for ``conn``."""
    values = _row_values(m)
    for i, model_field in _CONVERTED:
        values[i] = model_field.get_db_prep_save(values[i], conn)
    return values


def _row_postgres(conn: BaseDatabaseWrapper, m: Message) -> list[Any]:
    """The same values for psycopg as they are: it takes UUIDs and aware
    datetimes natively (the fields' conversions would return them
    unchanged), and the headers as ``jsonb``. ``delay()`` pays for every
    microsecond here."""
    from psycopg.types.json import Jsonb

    values = _row_values(m)
    if not all(values[i] is None or isinstance(values[i], uuid.UUID) for i in _UUIDS):
        return _row_generic(conn, m)
    values[_HEADERS] = Jsonb(values[_HEADERS])
    return values


def _insert(
    conn: BaseDatabaseWrapper, messages: Sequence[Message], suffix: str, notify: Sequence[str]
) -> list[Any]:
    columns = ", ".join(_INSERT_FIELDS) + ", " + _DEFAULTS_SQL
    row_sql = "(" + ", ".join(["%s"] * len(_INSERT_FIELDS)) + ", 0, 0, '', '', '', '')"
    params: list[Any] = []
    values = _row_postgres if is_postgres(conn) else _row_generic
    for m in messages:
        params.extend(values(conn, m))
    insert = (
        f"INSERT INTO {_T} ({columns}) VALUES "
        + ", ".join([row_sql] * len(messages))
        + suffix
        + " RETURNING id"
    )
    with _hot_cursor(conn) as cursor:
        if notify and is_postgres(conn):
            # One round trip: the insert and its NOTIFY; PostgreSQL delivers
            # the notification only if and when this transaction commits.
            calls = ", ".join(["pg_notify(%s, %s)"] * len(notify))
            notify_params = [p for q in notify for p in (NOTIFY_CHANNEL, q)]
            cursor.execute(
                f"WITH ins AS ({insert}) SELECT ins.id, {calls} FROM ins", params + notify_params
            )
        else:
            cursor.execute(insert, params)
        return [row[0] for row in cursor.fetchall()]


def _insert_unique(conn: BaseDatabaseWrapper, m: Message, notify: Sequence[str]) -> str | None:
    """Insert ``m`` unless an unfinished task holds its unique key: then return that id.

    The partial unique index decides, so concurrent callers cannot both win.
    A key whose ``unique_until`` has passed is released and the insert retried.
    """
    for _ in range(3):
        if _insert(conn, [m], " ON CONFLICT DO NOTHING", notify):
            return None
        row = (
            TaskRecord.objects.using(conn.alias)
            .filter(unique_key=m.unique_key, state__in=states.UNREADY_STATES)
            .values_list("id", "unique_until")
            .first()
        )
        if row is None:
            continue  # it finished meanwhile: try again
        holder, until = row
        if until is not None and until <= m.created_at:
            (
                TaskRecord.objects.using(conn.alias)
                .filter(pk=holder, unique_until__lte=m.created_at)
                .update(unique_key=None)
            )
            continue
        return str(holder)
    raise IntegrityError(
        f"could not enqueue {m.name} with unique_key {m.unique_key!r}: "
        f"task id {m.id} is taken or the key kept changing hands"
    )


#: Per process: when each queue was last notified from an autocommit enqueue.
_last_notify: dict[tuple[str, str], float] = {}
#: Enqueues of one process to one queue within this many seconds share one
#: NOTIFY: PostgreSQL serialises NOTIFY at commit, so one per enqueue caps
#: concurrent enqueuers at a few hundred per second.
NOTIFY_COALESCE = 0.005


def _notify_due(conn: BaseDatabaseWrapper, queues: set[str]) -> list[str]:
    if not is_postgres(conn):
        return []
    if conn.in_atomic_block:
        # Not committed yet: a later enqueue cannot rely on this NOTIFY.
        return sorted(queues)
    now = time.monotonic()
    due = []
    for q in sorted(queues):
        key = (conn.alias, q)
        # The last one was committed (autocommit) less than a moment ago: the
        # workers it woke drain the queue, and linger that long, so this
        # task is seen without a NOTIFY of its own.
        if now - _last_notify.get(key, 0.0) >= NOTIFY_COALESCE:
            due.append(q)
            _last_notify[key] = now
    return due


# -- claim ----------------------------------------------------------------------

_RETURNING_COLUMNS = (
    "id",
    "name",
    "queue",
    "priority",
    "content_type",
    "payload",
    "headers",
    "retries",
    "attempt",
    "acks_late",
    "ignore_result",
    "expires",
    "eta",
    "parent_id",
    "root_id",
    "group_id",
)
_RETURNING = ", ".join(_RETURNING_COLUMNS)


def claim(
    worker: str,
    queues: Sequence[str],
    limit: int,
    now: dt.datetime,
    lease_seconds: float,
    start: int = 0,
) -> list[Claimed]:
    """Claim up to ``limit`` ready rows of ``queues`` for ``worker``.

    Highest priority first, then oldest eta, then oldest id. Rows locked by
    another claimer are skipped, never waited on. Claimed rows are RECEIVED,
    carry a lease until ``now + lease_seconds`` and count one more attempt.
    The best ``start`` of them (unless expired) are marked STARTED at once,
    for a worker with that many free slots: no second write before they run.
    """
    return turn([], worker, [], now, queues, limit, start, lease_seconds).claimed


@dataclass
class Turn:
    """What one :func:`turn` did: the ``to_start`` rows it marked STARTED, and
    the rows it claimed, best first (``Claimed.started`` says which may run)."""

    started: set[str]
    claimed: list[Claimed]


def turn(
    outcomes: Sequence[Outcome],
    worker: str,
    to_start: Sequence[Claimed],
    now: dt.datetime,
    queues: Sequence[str] = (),
    limit: int = 0,
    start: int = 0,
    lease_seconds: float = 60.0,
) -> Turn:
    """The worker's turn, atomically: write finished outcomes, mark the
    claimed rows ``to_start`` STARTED, and claim up to ``limit`` more (the
    best ``start`` of them STARTED at once, see :func:`claim`).

    On PostgreSQL it is one statement (one round trip, one commit) unless an
    outcome carries a workflow or a retry; on SQLite one ``BEGIN IMMEDIATE``
    transaction.
    """
    claiming = limit > 0 and bool(queues)
    if not outcomes and not to_start and not claiming:
        return Turn(set(), [])
    conn = connection()
    lease = now + dt.timedelta(seconds=lease_seconds)
    if any(o.has_workflow for o in outcomes):
        started = _settle_workflow(conn, outcomes, worker, to_start, now)
        outcomes, to_start = [], []
        if not claiming:
            return Turn(started, [])
        turned = turn([], worker, [], now, queues, limit, start, lease_seconds)
        return Turn(started, turned.claimed)
    if is_postgres(conn):
        return _turn_postgres(
            conn,
            outcomes,
            worker,
            to_start,
            now,
            list(queues) if claiming else [],
            limit,
            start,
            lease,
        )
    with _write_transaction(conn) as cursor:
        _complete(cursor, conn, outcomes)
        started = _start(cursor, conn, worker, to_start, now)
        claimed = (
            _claim_sqlite(cursor, conn, worker, queues, limit, start, now, lease)
            if claiming
            else []
        )
    return Turn(started, claimed)


def _claim_sqlite(
    cursor: Any,
    conn: BaseDatabaseWrapper,
    worker: str,
    queues: Sequence[str],
    limit: int,
    start: int,
    now: dt.datetime,
    lease: dt.datetime,
) -> list[Claimed]:
    in_sql, in_params = _in_list(conn, queues)
    cursor.execute(
        f"""
        UPDATE {_T} SET state = 'RECEIVED', worker = %s, received_at = %s,
            lease_expires = %s, attempt = attempt + 1
        WHERE id IN (
            SELECT id FROM {_T}
            WHERE state IN {_WAITING} AND concurrency_key IS NULL
              AND queue {in_sql} AND eta <= %s
            ORDER BY priority DESC, eta, id
            LIMIT %s
        )
        RETURNING {_RETURNING}
        """,
        [worker, _dt(conn, now), _dt(conn, lease), *in_params, _dt(conn, now), limit],
    )
    claimed = [_claimed(conn, row, now, None) for row in cursor.fetchall()]
    claimed.sort(key=_best_first)
    go = [c for c in claimed[:start] if not c.expired]
    if go:
        in_sql, in_params = _in_list(conn, [c.db_id for c in go])
        cursor.execute(
            f"UPDATE {_T} SET state = 'STARTED', started_at = %s WHERE id {in_sql}",
            [_dt(conn, now), *in_params],
        )
        for c in go:
            c.started = True
    return claimed


def _best_first(c: Claimed) -> tuple[Any, ...]:
    # RETURNING does not keep the subquery's order.
    return (-c.priority, str(c.eta), c.id)


@dataclass
class Limit:
    """What bounds the claims of one task name: a rate (runs per second, across
    the cluster) and/or a cap on unfinished-and-claimed rows per key."""

    rate: float | None = None
    cap: int | None = None


def parse_rate(rate: str) -> float:
    """``"10/s"``, ``"100/m"``, ``"1000/h"`` → runs per second."""
    number, _, unit = rate.partition("/")
    return float(number) / {"s": 1, "m": 60, "h": 3600}[unit]


def claim_limited(
    worker: str,
    queues: Sequence[str],
    free: int,
    now: dt.datetime,
    lease_seconds: float,
    limits: dict[str, Limit],
) -> tuple[list[Claimed], dt.datetime | None]:
    """Claim rows of rate-limited or capped tasks, within their limits.

    Such rows carry a ``concurrency_key`` and are claimed here, one key at a
    time, never by :func:`claim`. For a cap, a lock row per key serialises the
    claimers while they count the key's held rows; for a rate, the task type's
    GCRA row is locked and advanced in the same transaction as the claim, so
    the limits hold across every worker. Returns the claimed rows and the
    earliest time a rate limit allows the next run (to wake up then).
    """
    from .models import ConcurrencyLock, TaskType

    conn = connection()
    in_sql, in_params = _in_list(conn, list(queues))
    with conn.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT concurrency_key, name FROM {_T} "
            f"WHERE concurrency_key IS NOT NULL AND state IN {_WAITING} "
            f"AND queue {in_sql} AND eta <= %s LIMIT 100",
            [*in_params, _dt(conn, now)],
        )
        groups = cursor.fetchall()
    claimed: list[Claimed] = []
    wake: dt.datetime | None = None
    lock_t = ConcurrencyLock._meta.db_table
    type_t = TaskType._meta.db_table
    for key, name in groups:
        if free <= 0:
            break
        limit = limits.get(name, Limit())
        with _write_transaction(conn) as cursor:
            allowed = free
            if limit.cap is not None:
                cursor.execute(
                    f"INSERT INTO {lock_t} (key) VALUES (%s) ON CONFLICT DO NOTHING", [key]
                )
                if is_postgres(conn):
                    cursor.execute(f"SELECT key FROM {lock_t} WHERE key = %s FOR UPDATE", [key])
                cursor.execute(
                    f"SELECT count(*) FROM {_T} WHERE concurrency_key = %s AND state IN {_HELD}",
                    [key],
                )
                allowed = min(allowed, limit.cap - cursor.fetchone()[0])
            tat = None
            if limit.rate is not None and allowed > 0:
                cursor.execute(
                    f"INSERT INTO {type_t} (name, rate_limit, time_limit, soft_time_limit, "
                    "rate_tat) VALUES (%s, '', NULL, NULL, NULL) ON CONFLICT DO NOTHING",
                    [name],
                )
                lock = " FOR UPDATE" if is_postgres(conn) else ""
                cursor.execute(f"SELECT rate_tat FROM {type_t} WHERE name = %s{lock}", [name])
                tat = _to_datetime(conn, cursor.fetchone()[0])
                if tat is not None and tat > now:
                    allowed = 0
                    wake = tat if wake is None else min(wake, tat)
                else:
                    allowed = min(allowed, 1)
            if allowed <= 0:
                continue
            rows = _claim_key(
                cursor, conn, worker, key, in_sql, in_params, allowed, now, lease_seconds
            )
            if rows and limit.rate is not None:
                start = max(tat or now, now)
                next_tat = start + dt.timedelta(seconds=len(rows) / limit.rate)
                cursor.execute(
                    f"UPDATE {type_t} SET rate_tat = %s WHERE name = %s",
                    [_dt(conn, next_tat), name],
                )
                wake = next_tat if wake is None else min(wake, next_tat)
        got = [_claimed(conn, row, now, None) for row in rows]
        claimed.extend(got)
        free -= len(got)
    return claimed, wake


def _claim_key(
    cursor: Any,
    conn: BaseDatabaseWrapper,
    worker: str,
    key: str,
    in_sql: str,
    in_params: list[Any],
    limit: int,
    now: dt.datetime,
    lease_seconds: float,
) -> list[Any]:
    lease = now + dt.timedelta(seconds=lease_seconds)
    skip = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
    cursor.execute(
        f"UPDATE {_T} SET state = 'RECEIVED', worker = %s, received_at = %s, "
        f"lease_expires = %s, attempt = attempt + 1 WHERE id IN ("
        f"SELECT id FROM {_T} WHERE concurrency_key = %s AND state IN {_WAITING} "
        f"AND queue {in_sql} AND eta <= %s ORDER BY priority DESC, eta, id LIMIT %s{skip}) "
        f"RETURNING {_RETURNING}",
        [worker, _dt(conn, now), _dt(conn, lease), key, *in_params, _dt(conn, now), limit],
    )
    return cursor.fetchall()


def _to_datetime(conn: BaseDatabaseWrapper, value: Any) -> dt.datetime | None:
    if value is None or (isinstance(value, dt.datetime) and value.tzinfo is not None):
        return value
    # SQLite's driver hands back text or a naive datetime (UTC).
    return conn.ops.convert_datetimefield_value(value, None, conn)


def task_types() -> dict[str, Any]:
    """Per task name: the ``taskctl`` overrides (rate limit, time limits)."""
    from .models import TaskType

    return {
        t.name: t
        for t in TaskType.objects.using(db_alias()).exclude(
            rate_limit="", time_limit=None, soft_time_limit=None
        )
    }


def _claimed(
    conn: BaseDatabaseWrapper, row: Sequence[Any], now: dt.datetime, now_db: dt.datetime | None
) -> Claimed:
    (
        db_id,
        name,
        queue,
        priority,
        content_type,
        payload,
        headers,
        retries,
        attempt,
        acks_late,
        ignore_result,
        expires,
        eta,
        parent_id,
        root_id,
        group_id,
    ) = row
    expired = False
    if expires is not None:
        if not isinstance(expires, dt.datetime) or expires.tzinfo is None:
            # SQLite's driver hands back text or a naive datetime (UTC).
            expires = conn.ops.convert_datetimefield_value(expires, None, conn)
        expired = expires <= now
    return Claimed(
        db_id=db_id,
        id=_uuid_str(db_id) or "",
        name=name,
        queue=queue,
        priority=priority,
        content_type=content_type,
        payload=payload,
        headers=_json_value(headers),
        retries=retries,
        attempt=attempt,
        acks_late=bool(acks_late),
        ignore_result=bool(ignore_result),
        expired=expired,
        eta=eta,
        parent_id=_uuid_str(parent_id),
        root_id=_uuid_str(root_id),
        group_id=_uuid_str(group_id),
    )


def start(worker: str, claimed: Sequence[Claimed], now: dt.datetime) -> set[str]:
    """Mark claimed rows STARTED; return the ids that were (a row revoked since
    its claim is not started and must not run)."""
    return settle([], worker, claimed, now)


def _start(
    cursor: Any,
    conn: BaseDatabaseWrapper,
    worker: str,
    claimed: Sequence[Claimed],
    now: dt.datetime,
) -> set[str]:
    if not claimed:
        return set()
    in_sql, in_params = _in_list(conn, [c.db_id for c in claimed])
    cursor.execute(
        f"UPDATE {_T} SET state = 'STARTED', started_at = %s "
        f"WHERE id {in_sql} AND worker = %s AND state = 'RECEIVED' RETURNING id",
        [_dt(conn, now), *in_params, worker],
    )
    return {_uuid_str(row[0]) or "" for row in cursor.fetchall()}


def settle(
    outcomes: Sequence[Outcome], worker: str, to_start: Sequence[Claimed], now: dt.datetime
) -> set[str]:
    """Write finished outcomes and mark the claimed rows ``to_start`` STARTED,
    atomically (a :func:`turn` that claims nothing). Returns the ids that may
    run (see :func:`start`)."""
    return turn(outcomes, worker, to_start, now).started


def _settle_workflow(
    conn: BaseDatabaseWrapper,
    outcomes: Sequence[Outcome],
    worker: str,
    to_start: Sequence[Claimed],
    now: dt.datetime,
) -> set[str]:
    """Like :func:`settle`, and in the same transaction the rows a workflow
    step leaves behind: next steps, callbacks, a chord's body. They are
    written only for outcomes that were applied (not fenced off)."""
    with _write_transaction(conn) as cursor:
        for o in outcomes:
            applied = _complete_one(cursor, conn, o)
            if not applied or o.state == states.RETRY:
                continue
            if o.followups is not None:
                _write_plan(conn, o.followups)
            if o.skipped:
                _insert_skipped(cursor, conn, o.skipped, now)
            if o.chord_id is not None:
                _chord_member_done(cursor, conn, o, now)
            if o._ends_unplanned:
                cursor.execute(
                    f"SELECT id, name, headers, root_id, exc_message FROM {_T} WHERE id = %s",
                    [_db_id(conn, o.task_id)],
                )
                _workflow_ended(cursor, conn, cursor.fetchall(), o.state, o.exc_type, now)
        return _start(cursor, conn, worker, to_start, now)


def _insert_skipped(
    cursor: Any, conn: BaseDatabaseWrapper, skipped: Sequence[Any], now: dt.datetime
) -> None:
    """Write workflow steps that will not run (``canvas.Skipped``) as REVOKED
    rows in their place; one that a chord waits for counts as a failed member,
    or the chord would wait for ever."""
    _insert(
        conn,
        [
            replace(
                _final_message(s.name, s.id, states.REVOKED, REVOKED_ERROR, s.reason, now),
                parent_id=_maybe_uuid(s.parent_id),
                root_id=_maybe_uuid(s.root_id),
                group_id=_maybe_uuid(s.group_id),
            )
            for s in skipped
        ],
        "",
        [],
    )
    for s in skipped:
        if s.chord_id is not None:
            _chord_member_done(
                cursor,
                conn,
                Outcome(
                    s.id,
                    0,
                    states.REVOKED,
                    now,
                    exc_type=REVOKED_ERROR,
                    exc_message=s.reason,
                    task_name=s.name,
                    chord_id=s.chord_id,
                    root_id=s.root_id,
                ),
                now,
            )


def _maybe_uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


def _complete_one(cursor: Any, conn: BaseDatabaseWrapper, o: Outcome) -> bool:
    _complete(cursor, conn, [o])  # one row: a plain execute, so rowcount is exact
    return cursor.rowcount == 1


def _final_message(
    name: str, task_id: str, state: str, exc_type: str, reason: str, now: dt.datetime
) -> Message:
    return Message(
        id=uuid.UUID(task_id),
        name=name,
        queue="-",
        priority=0,
        content_type="application/json",
        payload="[[], {}]",
        eta=now,
        created_at=now,
        state=state,
        exc_type=exc_type,
        exc_message=reason,
        done_at=now,
    )


def _chord_member_done(
    cursor: Any, conn: BaseDatabaseWrapper, o: Outcome, now: dt.datetime
) -> None:
    """Count a chord member out; the one that counts the last runs the body.

    The counter row is locked by the UPDATE until this transaction commits,
    so two members finishing at once are counted one after the other.
    """
    from .canvas import ChordError, Signature
    from .models import TaskGroup

    group_t = TaskGroup._meta.db_table
    gid = _db_id(conn, o.chord_id)
    cursor.execute(
        f"UPDATE {group_t} SET remaining = remaining - 1 WHERE id = %s "
        "RETURNING remaining, failed, body",
        [gid],
    )
    row = cursor.fetchone()
    if row is None:
        return
    remaining, failed, body = row
    body = _json_value(body) if body is not None else None
    if body is None:
        return
    body_sig = Signature.from_dict(body)
    parent = (o.task_id, o.root_id or o.task_id)
    if o.state != states.SUCCESS:
        cursor.execute(
            f"UPDATE {group_t} SET failed = %s WHERE id = %s AND failed = %s", [True, gid, False]
        )
        if cursor.rowcount == 1:
            reason = (
                f"chord member {o.task_name}[{o.task_id}] failed: "
                f"{o.exc_type.rpartition('.')[2]}: {o.exc_message}"
            )
            _insert(
                conn,
                [
                    _final_message(
                        leaf.task,
                        leaf.id or "",
                        states.FAILURE,
                        f"{ChordError.__module__}.ChordError",
                        reason,
                        now,
                    )
                    for leaf in body_sig.leaves()
                    if leaf.id
                ],
                "",
                [],
            )
            from .canvas import Plan, takes_request

            plan = Plan()
            for errback in body_sig.options.get("link_error") or []:
                errback_sig = Signature.from_dict(errback)
                # A (request, exc, traceback) errback needs the body's own
                # failure in a worker; the body never ran (docs/canvas.md).
                if not takes_request(errback_sig):
                    plan.extend(errback_sig.plan((body_sig.last().id,), (), parent))
            _write_plan(conn, plan)
        return
    if remaining != 0 or failed:
        return
    from . import serialization

    cursor.execute(
        f"SELECT headers, result, result_content_type FROM {_T} WHERE group_id = %s", [gid]
    )
    members = sorted(cursor.fetchall(), key=lambda r: _json_value(r[0]).get("group_index", 0))
    results = [serialization.decode(ct, res) if res is not None else None for _, res, ct in members]
    _write_plan(conn, body_sig.plan((results,), (), parent))


def write_plan(plan: Any) -> None:
    """Insert a canvas plan (groups and task rows) in one transaction."""
    conn = connection()
    with transaction.atomic(using=conn.alias):
        _write_plan(conn, plan)


def _write_plan(conn: BaseDatabaseWrapper, plan: Any) -> None:
    # Raw statements, not the ORM: this may run inside the worker's own
    # BEGIN IMMEDIATE on SQLite, where the ORM would try to open another.
    from .models import TaskGroup

    if plan.groups:
        meta = TaskGroup._meta
        f = {
            name: meta.get_field(name)
            for name in ("id", "member_ids", "body", "body_id", "created_at")
        }
        params: list[Any] = []
        for g in plan.groups:
            params.extend(
                (
                    f["id"].get_db_prep_save(g.id, conn),
                    f["member_ids"].get_db_prep_save(g.member_ids, conn),
                    len(g.member_ids),
                    len(g.member_ids),
                    False,
                    f["body"].get_db_prep_save(g.body, conn),
                    f["body_id"].get_db_prep_save(
                        uuid.UUID(g.body_id) if g.body_id else None, conn
                    ),
                    f["created_at"].get_db_prep_save(timezone.now(), conn),
                )
            )
        with conn.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {meta.db_table} (id, member_ids, size, remaining, failed, body, "
                "body_id, created_at) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(plan.groups)),
                params,
            )
    if plan.messages:
        enqueue(plan.messages)


_FINAL_COLUMNS = (
    ("id", "uuid"),
    ("attempt", "int"),
    ("state", "varchar"),
    ("result", "text"),
    ("result_content_type", "varchar"),
    ("exc_type", "varchar"),
    ("exc_message", "text"),
    ("traceback", "text"),
    ("runtime", "float8"),
    ("done_at", "timestamptz"),
)


def _turn_postgres(
    conn: BaseDatabaseWrapper,
    outcomes: Sequence[Outcome],
    worker: str,
    to_start: Sequence[Claimed],
    now: dt.datetime,
    queues: list[str],
    limit: int,
    start: int,
    lease: dt.datetime,
) -> Turn:
    finals = [o for o in outcomes if o.state != states.RETRY]
    retries = [o for o in outcomes if o.state == states.RETRY]
    if retries:
        complete(retries)
    parts: list[str] = []
    params: list[Any] = []
    selects: list[str] = []
    # Every SELECT below has the claimed rows' columns plus a last one that
    # says what the row is: a claimed row's state, 'B' (a buffered row now
    # STARTED, its id only) or 'N' (the events NOTIFY).
    blank = ", ".join(["NULL"] * (len(_RETURNING_COLUMNS) - 1))
    if finals:
        # Every finished task of the turn in one UPDATE … FROM unnest(…),
        # fenced by attempt like complete(). One array per column keeps the
        # statement's shape (and its prepared plan) the same for any batch.
        columns = list(zip(*(_final_values(o) for o in finals), strict=True))
        parts.append(
            "v AS (SELECT * FROM unnest("
            + ", ".join(f"%s::{t}[]" for _, t in _FINAL_COLUMNS)
            + f") AS v({', '.join(c for c, _ in _FINAL_COLUMNS)}))"
        )
        params.extend(list(col) for col in columns)
        parts.append(
            f"done AS (UPDATE {_T} AS t SET state = v.state, "
            "result = CASE WHEN v.result IS NULL AND v.state <> 'SUCCESS' THEN t.result "
            "ELSE v.result END, "
            "result_content_type = CASE WHEN v.result IS NULL AND v.state <> 'SUCCESS' "
            "THEN t.result_content_type ELSE v.result_content_type END, "
            "exc_type = v.exc_type, "
            "exc_message = v.exc_message, traceback = v.traceback, runtime = v.runtime, "
            "done_at = v.done_at, started_at = COALESCE(t.started_at, v.done_at), "
            "lease_expires = NULL, custom_state = '' "
            f"FROM v WHERE t.id = v.id AND t.attempt = v.attempt AND {_HELD_OPAQUE} "
            "RETURNING 1)"
        )
    if to_start:
        # Disjoint from the rows above: those are STARTED, these RECEIVED.
        parts.append(
            f"started AS (UPDATE {_T} SET state = 'STARTED', started_at = %s "
            "WHERE id = ANY(%s) AND worker = %s AND COALESCE(state, '') = 'RECEIVED' "
            "RETURNING id)"
        )
        params.extend((now, [c.db_id for c in to_start], worker))
        selects.append(f"SELECT id, {blank}, 'B' FROM started")
    if queues:
        # Per queue, an ordered scan of the ready index that stops after
        # ``limit`` unlocked rows (``queue = ANY(...)`` would read the whole
        # backlog and sort it); then the best ``limit`` across queues, the
        # best ``start`` of them (unless expired) STARTED at once.
        parts.append(
            f"""ready AS (
                SELECT r.id, (row_number() OVER (ORDER BY r.priority DESC, r.eta, r.id) <= %s
                              AND (r.expires IS NULL OR r.expires > %s)) AS go
                FROM unnest(%s::varchar[]) AS q(name)
                CROSS JOIN LATERAL (
                    SELECT id, priority, eta, expires FROM {_T}
                    WHERE state IN {_WAITING} AND concurrency_key IS NULL
                      AND queue = q.name AND eta <= %s
                    ORDER BY priority DESC, eta, id
                    LIMIT %s
                    FOR UPDATE SKIP LOCKED
                ) AS r
                ORDER BY r.priority DESC, r.eta, r.id
                LIMIT %s
            )"""
        )
        params.extend((start, now, queues, now, limit, limit))
        parts.append(
            f"claimed AS (UPDATE {_T} SET "
            "state = CASE WHEN ready.go THEN 'STARTED' ELSE 'RECEIVED' END, "
            "started_at = CASE WHEN ready.go THEN %s::timestamptz END, "
            "worker = %s, received_at = %s, lease_expires = %s, "
            f"attempt = {_T}.attempt + 1 "
            f"FROM ready WHERE {_T}.id = ready.id "
            f"RETURNING {', '.join(f'{_T}.{c}' for c in _RETURNING_COLUMNS)}, {_T}.state)"
        )
        params.extend((now, worker, now, lease))
        selects.append(f"SELECT {', '.join(_RETURNING_COLUMNS)}, state FROM claimed")
    if not parts:
        return Turn(set(), [])
    global _last_events_notify
    if time.monotonic() - _last_events_notify >= EVENTS_NOTIFY_INTERVAL:
        _last_events_notify = time.monotonic()
        selects.append(f"SELECT NULL, {blank}, 'N' FROM pg_notify(%s, '')")
        params.append(EVENTS_CHANNEL)
    if not selects:
        selects.append(f"SELECT NULL, {blank}, 'N' WHERE false")
    with _hot_cursor(conn) as cursor:
        cursor.execute("WITH " + ", ".join(parts) + " " + " UNION ALL ".join(selects), params)
        rows = cursor.fetchall()
    started: set[str] = set()
    claimed: list[Claimed] = []
    for row in rows:
        kind = row[-1]
        if kind == "B":
            started.add(str(row[0]))
        elif kind != "N":
            c = _claimed(conn, row[:-1], now, now)
            c.started = kind == "STARTED"
            claimed.append(c)
    claimed.sort(key=_best_first)
    return Turn(started, claimed)


def _final_values(o: Outcome) -> tuple[Any, ...]:
    return (
        o.task_id,  # text, cast to uuid[] by the statement (cheaper than uuid.UUID here)
        o.attempt,
        o.state,
        o.result,
        o.result_content_type,
        o.exc_type,
        o.exc_message,
        o.traceback,
        o.runtime,
        o.done_at,
    )


def release(worker: str, claimed: Sequence[Claimed]) -> int:
    """Put claimed-but-unstarted rows back in the queue at once (warm shutdown)."""
    if not claimed:
        return 0
    conn = connection()
    in_sql, in_params = _in_list(conn, [c.db_id for c in claimed])
    sql = (
        f"UPDATE {_T} SET state = 'PENDING', worker = '', lease_expires = NULL, "
        f"received_at = NULL WHERE id {in_sql} AND worker = %s AND state = 'RECEIVED'"
    )
    with _write_transaction(conn) as cursor:
        cursor.execute(sql, [*in_params, worker])
        return cursor.rowcount


def requeue_running(worker: str, claimed: Sequence[Claimed]) -> int:
    """Put started ``acks_late`` rows back in the queue (their run was cut off)."""
    if not claimed:
        return 0
    conn = connection()
    in_sql, in_params = _in_list(conn, [c.db_id for c in claimed])
    sql = (
        f"UPDATE {_T} SET state = 'PENDING', worker = '', lease_expires = NULL, "
        f"received_at = NULL, started_at = NULL, custom_state = '' "
        f"WHERE id {in_sql} AND worker = %s AND state IN {_HELD}"
    )
    with _write_transaction(conn) as cursor:
        cursor.execute(sql, [*in_params, worker])
        return cursor.rowcount


def requeue_orphans(worker: str, since: dt.datetime, known: Sequence[str]) -> int:
    """Put back rows claimed under ``worker``'s name since ``since`` that it
    does not know it holds: a statement claimed them and committed, but its
    reply never reached the worker. They were never handed to a task, so
    they go back to the queue at once (the claim still counts as an attempt).
    """
    conn = connection()
    sql = (
        f"UPDATE {_T} SET state = 'PENDING', worker = '', lease_expires = NULL, "
        "received_at = NULL, started_at = NULL, custom_state = '' "
        f"WHERE worker = %s AND state IN {_HELD} AND received_at >= %s"
    )
    params: list[Any] = [worker, _dt(conn, since)]
    if known:
        in_sql, in_params = _in_list(conn, [_db_id(conn, t) for t in known])
        sql += f" AND NOT (id {in_sql})"
        params.extend(in_params)
    with _write_transaction(conn) as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# -- outcomes -------------------------------------------------------------------


def complete(outcomes: Sequence[Outcome]) -> None:
    """Write many outcomes in one transaction.

    Each write is fenced by the attempt number: a worker whose lease ran out
    and whose task was claimed again elsewhere cannot overwrite the newer run.
    """
    if outcomes:
        conn = connection()
        with _write_transaction(conn) as cursor:
            _complete(cursor, conn, outcomes)


def _complete(cursor: Any, conn: BaseDatabaseWrapper, outcomes: Iterable[Outcome]) -> None:
    finals: list[list[Any]] = []
    retries: list[list[Any]] = []
    for o in outcomes:
        db_id = _db_id(conn, o.task_id)
        if o.state == states.RETRY:
            retries.append(
                [
                    _dt(conn, o.retry_eta),
                    o.exc_type,
                    o.exc_message,
                    o.traceback,
                    o.runtime,
                    o.new_payload,
                    db_id,
                    o.attempt,
                ]
            )
        else:
            # A failure carries no value: keep what the row holds (progress
            # meta, a django.tasks run history) rather than erase it.
            keep = o.result is None and o.state != states.SUCCESS
            finals.append(
                [
                    o.state,
                    keep,
                    o.result,
                    keep,
                    o.result_content_type,
                    o.exc_type,
                    o.exc_message,
                    o.traceback,
                    o.runtime,
                    _dt(conn, o.done_at),
                    _dt(conn, o.done_at),
                    db_id,
                    o.attempt,
                ]
            )
    if finals:
        _execute_many(
            cursor,
            (
                f"UPDATE {_T} SET state = %s, "
                "result = CASE WHEN %s THEN result ELSE %s END, "
                "result_content_type = CASE WHEN %s THEN result_content_type ELSE %s END, "
                "exc_type = %s, exc_message = %s, traceback = %s, runtime = %s, "
                "done_at = %s, started_at = COALESCE(started_at, %s), "
                "lease_expires = NULL, custom_state = '' "
                f"WHERE id = %s AND attempt = %s AND state IN {_HELD}"
            ),
            finals,
        )
    if retries:
        _execute_many(
            cursor,
            (
                f"UPDATE {_T} SET state = 'RETRY', eta = %s, retries = retries + 1, "
                "exc_type = %s, exc_message = %s, traceback = %s, runtime = %s, "
                "payload = COALESCE(%s, payload), worker = '', lease_expires = NULL, "
                "custom_state = '' "
                f"WHERE id = %s AND attempt = %s AND state IN {_HELD}"
            ),
            retries,
        )


def _execute_many(cursor: Any, sql: str, rows: list[list[Any]]) -> None:
    if len(rows) == 1:
        cursor.execute(sql, rows[0])
    else:
        cursor.executemany(sql, rows)


def set_progress(task_id: str, custom_state: str, content_type: str, meta: str | None) -> None:
    """Record a running task's ``update_state()`` (state name and meta)."""
    conn = connection()
    with conn.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_T} SET custom_state = %s, result = %s, result_content_type = %s "
            f"WHERE id = %s AND state IN {_HELD}",
            [custom_state, meta, content_type, _db_id(conn, task_id)],
        )


def revoke(
    task_ids: Sequence[str], reason: str, now: dt.datetime, attempt: int | None = None
) -> list[str]:
    """Revoke tasks that have not started; return the ids actually revoked."""
    if not task_ids:
        return []
    conn = connection()
    in_sql, in_params = _in_list(conn, [_db_id(conn, t) for t in task_ids])
    fence = ""
    params = [_dt(conn, now), REVOKED_ERROR, reason, *in_params]
    if attempt is not None:
        fence = " AND attempt = %s"
        params.append(attempt)
    sql = (
        f"UPDATE {_T} SET state = 'REVOKED', done_at = %s, exc_type = %s, "
        "exc_message = %s, lease_expires = NULL "
        f"WHERE id {in_sql} AND state IN ('PENDING', 'RETRY', 'RECEIVED'){fence} "
        "RETURNING id, name, headers, root_id, exc_message"
    )
    with _write_transaction(conn) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        _workflow_ended(cursor, conn, rows, states.REVOKED, REVOKED_ERROR, now)
        return [_uuid_str(r[0]) or "" for r in rows]


def _workflow_ended(
    cursor: Any,
    conn: BaseDatabaseWrapper,
    rows: Sequence[Any],
    state: str,
    exc_type: str,
    now: dt.datetime,
) -> None:
    """Settle the workflows of rows that ended without an outcome of their own
    (revoked, expired, lost with their worker), in the same transaction: the
    rest of a chain is recorded as not run, a chord counts the member as
    failed, and a lost task's error callbacks are called. Without this a
    chain's later steps stayed PENDING and a chord waited for ever.

    ``rows`` are ``(id, name, headers, root_id, reason)``.
    """
    from .canvas import after_failure

    for task_id, name, headers, root_id, reason in rows:
        headers = _json_value(headers)
        if not isinstance(headers, dict) or not headers.keys() & {"chain", "chord", "link_error"}:
            continue
        tid, root = _uuid_str(task_id) or "", _uuid_str(root_id)
        why = f"{exc_type.rpartition('.')[2]}: {reason}"
        try:
            errbacks, skipped = after_failure(headers, tid, root, why)
        except Exception:  # a bad stored signature must not block revoke or rescue
            import logging

            logging.getLogger("djtasks.worker").exception(
                "could not settle the workflow of %s[%s]", name, tid
            )
            continue
        if state == states.FAILURE:
            _write_plan(conn, errbacks)
        if skipped:
            _insert_skipped(cursor, conn, skipped, now)
        if headers.get("chord") is not None:
            _chord_member_done(
                cursor,
                conn,
                Outcome(
                    tid,
                    0,
                    state,
                    now,
                    exc_type=exc_type,
                    exc_message=reason,
                    task_name=name,
                    chord_id=headers["chord"],
                    root_id=root,
                ),
                now,
            )


def forget(task_id: str) -> None:
    """Delete a finished task's row; an unfinished one keeps no result when it ends."""
    qs = TaskRecord.objects.using(db_alias()).filter(pk=task_id)
    qs.filter(state__in=states.READY_STATES).delete()
    qs.exclude(state__in=states.READY_STATES).update(ignore_result=True)


# -- leases and workers -----------------------------------------------------------


def renew_leases(
    worker: str, now: dt.datetime, lease_seconds: float, task_ids: Sequence[str] | None = None
) -> int:
    """Extend the lease of the rows ``worker`` holds (one statement).

    ``task_ids`` limits it to the rows the worker knows it holds. A row held
    under its name that it does not know of must expire instead: one left by
    a killed process that had the same ``--hostname``, or one claimed by a
    statement whose reply never arrived. Renewed by name, it would stay held
    for as long as the worker lives.
    """
    conn = connection()
    sql = f"UPDATE {_T} SET lease_expires = %s WHERE worker = %s AND state IN {_HELD}"
    params = [_dt(conn, now + dt.timedelta(seconds=lease_seconds)), worker]
    if task_ids is not None:
        if not task_ids:
            return 0
        in_sql, in_params = _in_list(conn, [_db_id(conn, t) for t in task_ids])
        sql += f" AND id {in_sql}"
        params.extend(in_params)
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@dataclass
class Rescued:
    requeued: int
    lost: int


def rescue_expired(now: dt.datetime) -> Rescued:
    """Recover rows whose worker stopped renewing their lease.

    A row that never started (or whose task is ``acks_late``) goes back to
    the queue; a started one ends FAILURE with ``WorkerLostError`` naming the
    worker, so it is neither lost nor run twice. Safe to run from many
    workers at once: each UPDATE re-checks its condition on the locked row.
    """
    conn = connection()
    now_db = _dt(conn, now)
    # An acks_late task whose workers keep dying (a segfault, an OOM kill) is
    # given up after this many deliveries of one retry, not redelivered forever.
    limit = settings.MAX_REDELIVERIES
    with _write_transaction(conn) as cursor:
        cursor.execute(
            f"UPDATE {_T} SET state = 'PENDING', worker = '', lease_expires = NULL, "
            "received_at = NULL, started_at = NULL, custom_state = '' "
            f"WHERE state IN {_HELD} AND lease_expires < %s "
            "AND (state = 'RECEIVED' OR (acks_late = %s AND attempt - retries < %s))",
            [now_db, True, limit],
        )
        requeued = cursor.rowcount
        cursor.execute(
            f"UPDATE {_T} SET state = 'FAILURE', done_at = %s, lease_expires = NULL, "
            "exc_type = %s, exc_message = 'worker ' || worker || "
            "' stopped (lease expired) while running this task', custom_state = '' "
            "WHERE state = 'STARTED' AND lease_expires < %s "
            "RETURNING id, name, headers, root_id, exc_message",
            [now_db, WORKER_LOST, now_db],
        )
        rows = cursor.fetchall()
        lost = len(rows)
        _workflow_ended(cursor, conn, rows, states.FAILURE, WORKER_LOST, now)
    return Rescued(requeued, lost)


def paused_queues() -> set[str]:
    """Names of the queues paused with ``taskctl pause``."""
    from .models import PausedQueue

    return set(PausedQueue.objects.using(db_alias()).values_list("name", flat=True))


def worker_heartbeat(name: str, now: dt.datetime, processed: int, **fields: Any) -> None:
    """Create or refresh ``name``'s worker row."""
    # Queues and pool size change at run time (remote control, autoscale).
    live = {k: fields[k] for k in ("queues", "concurrency") if k in fields}
    updated = (
        Worker.objects.using(db_alias())
        .filter(pk=name)
        .update(last_seen=now, processed=processed, stopped_at=None, **live)
    )
    if not updated:
        Worker.objects.using(db_alias()).update_or_create(
            pk=name,
            defaults={"last_seen": now, "processed": processed, "started_at": now, **fields},
        )


def worker_stopped(name: str, now: dt.datetime, processed: int) -> None:
    Worker.objects.using(db_alias()).filter(pk=name).update(
        last_seen=now, stopped_at=now, processed=processed
    )


# -- purge ------------------------------------------------------------------------


def purge(queues: Sequence[str] | None = None) -> int:
    """Delete the tasks waiting in ``queues`` (every queue if None); return how many.

    Only PENDING and RETRY rows go, scheduled ones included: a row a worker
    has claimed or started is left alone, even if it was claimed between the
    caller's count and this statement (the WHERE is re-checked on each
    locked row).
    """
    if queues is not None and not queues:
        return 0
    conn = connection()
    sql = f"DELETE FROM {_T} WHERE state IN {_WAITING}"
    params: list[Any] = []
    if queues is not None:
        in_sql, params = _in_list(conn, list(queues))
        sql += f" AND queue {in_sql}"
    with _write_transaction(conn) as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def prune_expired(
    now: dt.datetime, max_age: float, batch: int = 5000, max_batches: int = 20
) -> int:
    """Delete finished rows older than ``max_age`` seconds, a batch at a time.

    Keeps the table the size of its recent history so claims and the admin
    stay fast. Short statements (``batch`` rows each) so a big backlog of
    old rows never holds long locks; several workers may prune at once.
    """
    from .models import TaskGroup

    conn = connection()
    cutoff = _dt(conn, now - dt.timedelta(seconds=max_age))
    skip = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
    total = 0
    for _ in range(max_batches):
        with _write_transaction(conn) as cursor:
            cursor.execute(
                f"DELETE FROM {_T} WHERE id IN (SELECT id FROM {_T} "
                "WHERE state IN ('SUCCESS', 'FAILURE', 'REVOKED') AND done_at < %s "
                f"LIMIT %s{skip})",
                [cutoff, batch],
            )
            deleted = cursor.rowcount
        total += deleted
        if deleted < batch:
            break
    groups = TaskGroup._meta.db_table
    with _write_transaction(conn) as cursor:
        cursor.execute(f"DELETE FROM {groups} WHERE created_at < %s AND remaining <= 0", [cutoff])
    return total
