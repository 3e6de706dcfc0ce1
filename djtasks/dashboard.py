"""Read-side figures for the admin: the dashboard's snapshot and cheap counts.

Every query here stays cheap on a table with millions of rows because it reads
only one of these:

- waiting rows (``PENDING``/``RETRY``) through the partial ready index, and
  held rows (``RECEIVED``/``STARTED``) through the partial held index: their
  size follows the backlog, not the history;
- finished rows of a bounded time range through the ``(state, done_at)``
  index (the last day at most, the last 20,000 successes for runtimes);
- the worker rows (one per worker process).

Nothing counts the whole table: the total is PostgreSQL's own estimate
(``pg_class.reltuples``) or, elsewhere, a count capped at :data:`COUNT_CAP`.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Aggregate, Count, FloatField, Max, Min, Q, QuerySet
from django.db.models.functions import TruncMinute

from . import queue, states
from .conf import settings
from .models import TaskRecord, Worker

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
#: Counts above this are shown as "more than" (or as PostgreSQL's estimate).
COUNT_CAP = 10_000
#: Runtime percentiles use at most this many of the latest successes.
RUNTIME_SAMPLE = 20_000
#: Buckets of the day chart, in minutes.
DAY_BUCKET_MINUTES = 15
_HELD = (states.RECEIVED, states.STARTED)
_FINISHED = (states.SUCCESS, states.FAILURE, states.REVOKED)


def tasks() -> QuerySet[TaskRecord]:
    return TaskRecord.objects.using(queue.db_alias())


def workers() -> QuerySet[Worker]:
    return Worker.objects.using(queue.db_alias())


# -- counting ---------------------------------------------------------------------


def capped_count(qs: QuerySet[Any], cap: int = COUNT_CAP) -> int:
    """``qs.count()``, but reading at most ``cap + 1`` rows: ``cap + 1`` means "more".

    ``qs`` keeps its ordering: the admin's newest-first order lets PostgreSQL
    walk the primary key backwards and stop at the cap, where an unordered
    scan would start from the oldest rows.
    """
    return qs.values("pk")[: cap + 1].count()


def estimated_total() -> int | None:
    """PostgreSQL's estimate of the task table's row count (no scan), else ``None``.

    ``reltuples`` is kept by ANALYZE and autovacuum; it is -1 (or 0) for a
    table never analysed, which reads here as "no estimate".
    """
    conn = queue.connection()
    if not queue.is_postgres(conn):
        return None
    # A catalog lookup, not a read of the task table: one row, no locks.
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [TaskRecord._meta.db_table]
        )
        row = cursor.fetchone()
    if not row or row[0] is None or row[0] <= 0:
        return None
    return int(row[0])


# -- workers ----------------------------------------------------------------------


def online_cutoff(now: dt.datetime) -> dt.datetime:
    """Workers seen after this are online.

    A worker writes its heartbeat every quarter of ``DJTASKS_VISIBILITY_TIMEOUT``
    (the lease); one silent for a whole lease has lost its tasks to the rescuer,
    so it counts as offline from then on.
    """
    return now - dt.timedelta(seconds=float(settings.VISIBILITY_TIMEOUT))


# -- the dashboard ----------------------------------------------------------------


@dataclass
class QueueDepth:
    name: str
    ready: int = 0
    scheduled: int = 0
    running: int = 0
    oldest_eta: dt.datetime | None = None
    oldest_id: str | None = None
    oldest_name: str | None = None
    paused: bool = False

    def oldest_age(self, now: dt.datetime) -> float | None:
        return (
            None if self.oldest_eta is None else max(0.0, (now - self.oldest_eta).total_seconds())
        )


@dataclass
class WorkerLoad:
    name: str
    hostname: str
    pool: str
    concurrency: int
    queues: list[str]
    processed: int
    last_seen: dt.datetime
    online: bool
    running: int


@dataclass
class Bucket:
    start: dt.datetime
    succeeded: int = 0
    failed: int = 0


@dataclass
class Runtime:
    name: str
    count: int
    p50: float
    p95: float
    max: float


@dataclass
class Snapshot:
    """Everything the dashboard shows, computed at ``now``."""

    now: dt.datetime
    unfinished: dict[str, int]
    finished_hour: dict[str, int]
    finished_day: dict[str, int]
    queues: list[QueueDepth]
    workers: list[WorkerLoad]
    minutes: list[Bucket]  # the last hour, a bucket a minute
    day: list[Bucket]  # the last day, a bucket every DAY_BUCKET_MINUTES
    runtimes: list[Runtime]
    runtime_window: dt.timedelta
    runtime_sample: int
    failures: list[dict[str, Any]]
    total_estimate: int | None
    total_capped: int | None = None

    @staticmethod
    def _rate(counts: dict[str, int]) -> float | None:
        done = counts.get(states.SUCCESS, 0) + counts.get(states.FAILURE, 0)
        return None if done == 0 else counts.get(states.FAILURE, 0) / done

    @property
    def failure_rate_hour(self) -> float | None:
        return self._rate(self.finished_hour)

    @property
    def failure_rate_day(self) -> float | None:
        return self._rate(self.finished_day)

    @property
    def workers_online(self) -> int:
        return sum(1 for w in self.workers if w.online)

    def as_json(self) -> dict[str, Any]:
        """The figures as plain JSON (what the refresh endpoint returns beside the HTML)."""
        return {
            "now": self.now.isoformat(),
            "unfinished": self.unfinished,
            "finished_hour": self.finished_hour,
            "finished_day": self.finished_day,
            "failure_rate_hour": self.failure_rate_hour,
            "failure_rate_day": self.failure_rate_day,
            "queues": [
                {
                    "name": q.name,
                    "ready": q.ready,
                    "scheduled": q.scheduled,
                    "running": q.running,
                    "paused": q.paused,
                    "oldest_id": q.oldest_id,
                    "oldest_age": q.oldest_age(self.now),
                }
                for q in self.queues
            ],
            "workers": [
                {
                    "name": w.name,
                    "online": w.online,
                    "running": w.running,
                    "concurrency": w.concurrency,
                    "processed": w.processed,
                    "last_seen": w.last_seen.isoformat(),
                }
                for w in self.workers
            ],
            "per_minute": [
                {"start": b.start.isoformat(), "succeeded": b.succeeded, "failed": b.failed}
                for b in self.minutes
            ],
            "runtimes": [
                {"name": r.name, "count": r.count, "p50": r.p50, "p95": r.p95}
                for r in self.runtimes
            ],
            "failures": [{"id": f["id"], "name": f["name"]} for f in self.failures],
            "total_estimate": self.total_estimate,
        }


def snapshot(now: dt.datetime) -> Snapshot:
    """Compute the dashboard's figures (about eight bounded queries)."""
    queues: dict[str, QueueDepth] = {}
    unfinished = dict.fromkeys(sorted(states.UNREADY_STATES), 0)

    def depth(name: str) -> QueueDepth:
        return queues.setdefault(name, QueueDepth(name))

    waiting = (
        tasks()
        .filter(state__in=states.WAITING_STATES)
        .values("queue", "state")
        .annotate(
            ready=Count("pk", filter=Q(eta__lte=now)),
            scheduled=Count("pk", filter=Q(eta__gt=now)),
            oldest=Min("eta", filter=Q(eta__lte=now)),
        )
        .order_by()
    )
    for row in waiting:
        q = depth(row["queue"])
        q.ready += row["ready"]
        q.scheduled += row["scheduled"]
        if row["oldest"] is not None and (q.oldest_eta is None or row["oldest"] < q.oldest_eta):
            q.oldest_eta = row["oldest"]
        unfinished[row["state"]] += row["ready"] + row["scheduled"]

    running: dict[str, int] = defaultdict(int)
    held = (
        tasks()
        .filter(state__in=_HELD)
        .values("queue", "worker", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in held:
        depth(row["queue"]).running += row["n"]
        running[row["worker"]] += row["n"]
        unfinished[row["state"]] += row["n"]

    for name in queue.paused_queues():  # taskctl pause: shown even when empty
        depth(name).paused = True

    for q in sorted(queues.values(), key=lambda q: -q.ready)[:20]:
        if q.oldest_eta is not None:
            oldest = (
                tasks()
                .filter(state__in=states.WAITING_STATES, queue=q.name, eta=q.oldest_eta)
                .values("id", "name")
                .first()
            )
            if oldest:
                q.oldest_id, q.oldest_name = str(oldest["id"]), oldest["name"]

    minutes, day, finished_hour, finished_day = _throughput(now)
    runtimes, window, sample = _runtimes(now)
    failures = list(
        tasks()
        .filter(state=states.FAILURE)
        .order_by("-done_at")
        .values("id", "name", "queue", "exc_type", "exc_message", "done_at", "worker")[:8]
    )
    for f in failures:
        f["id"] = str(f["id"])
        f["exc_message"] = (f["exc_message"] or "")[:200]

    now_online = online_cutoff(now)
    worker_rows = (
        workers()
        .filter(Q(stopped_at__isnull=True) | Q(last_seen__gte=now - DAY))
        .order_by("-last_seen")[:100]
    )
    loads = [
        WorkerLoad(
            name=w.name,
            hostname=w.hostname,
            pool=w.pool,
            concurrency=w.concurrency,
            queues=list(w.queues or []),
            processed=w.processed,
            last_seen=w.last_seen,
            online=w.stopped_at is None and w.last_seen >= now_online,
            running=running.get(w.name, 0),
        )
        for w in worker_rows
    ]
    loads.sort(key=lambda w: (not w.online, w.name))

    total = estimated_total()
    return Snapshot(
        now=now,
        unfinished=unfinished,
        finished_hour=finished_hour,
        finished_day=finished_day,
        queues=sorted(queues.values(), key=lambda q: q.name),
        workers=loads,
        minutes=minutes,
        day=day,
        runtimes=runtimes,
        runtime_window=window,
        runtime_sample=sample,
        failures=failures,
        total_estimate=total,
        total_capped=capped_count(tasks(), 100_000) if total is None else None,
    )


def _minute(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(second=0, microsecond=0)


_BUCKET = dt.timedelta(minutes=DAY_BUCKET_MINUTES)


def _bucket_of(minute: dt.datetime) -> dt.datetime:
    return minute - dt.timedelta(minutes=minute.minute % DAY_BUCKET_MINUTES)


def _finished_per_minute(
    since: dt.datetime,
    until: dt.datetime | None = None,
) -> dict[dt.datetime, dict[str, int]]:
    """Finished tasks by minute and state: one range scan of the done index."""
    qs = tasks().filter(state__in=_FINISHED, done_at__gte=since)
    if until is not None:
        qs = qs.filter(done_at__lt=until)
    rows = (
        qs.annotate(minute=TruncMinute("done_at", tzinfo=dt.UTC))
        .values("minute", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts: dict[dt.datetime, dict[str, int]] = defaultdict(dict)
    for row in rows:
        minute = row["minute"]
        minute = minute.replace(tzinfo=dt.UTC) if minute.tzinfo is None else minute
        counts[minute.astimezone(dt.UTC)][row["state"]] = row["n"]
    return counts


def _settled_buckets(first: dt.datetime, end: dt.datetime) -> dict[dt.datetime, dict[str, int]]:
    """Counts by state of the day chart's 15-minute buckets in ``[first, end)``.

    These buckets are over an hour old, so their counts no longer change:
    they are kept in Django's cache and only the buckets missing from it are
    read (a 15-minute range, once every 15 minutes). Without this, every
    refresh would scan a whole day of finished rows (400 ms at 1,000,000 rows a day).
    """
    key = f"djtasks:dashboard:buckets:{queue.db_alias()}"
    cached: dict[dt.datetime, dict[str, int]] = cache.get(key) or {}
    wanted = []
    start = first
    while start < end:
        wanted.append(start)
        start += _BUCKET
    missing = [b for b in wanted if b not in cached]
    if missing:
        for b in wanted:
            if b >= missing[0]:
                cached[b] = {}
        for minute, counts in _finished_per_minute(missing[0], end).items():
            bucket = cached[_bucket_of(minute)]
            for state, n in counts.items():
                bucket[state] = bucket.get(state, 0) + n
    settled = {b: cached[b] for b in wanted}
    if missing or len(cached) != len(settled):
        cache.set(key, settled, timeout=int(DAY.total_seconds()))
    return settled


def _throughput(
    now: dt.datetime,
) -> tuple[list[Bucket], list[Bucket], dict[str, int], dict[str, int]]:
    """Finished tasks per minute over the last hour, and per 15 minutes over the last day."""
    this_minute = _minute(now)
    hour_start = this_minute - dt.timedelta(minutes=59)
    fresh_start = _bucket_of(hour_start)
    day_start = _bucket_of(this_minute - DAY) + _BUCKET
    fresh = _finished_per_minute(fresh_start)
    settled = _settled_buckets(day_start, fresh_start)

    minutes = [Bucket(hour_start + dt.timedelta(minutes=i)) for i in range(60)]
    day = [Bucket(day_start + _BUCKET * i) for i in range(int(DAY / _BUCKET))]
    finished_hour = dict.fromkeys(_FINISHED, 0)
    finished_day = dict.fromkeys(_FINISHED, 0)

    def add(target: Bucket, counts: dict[str, int]) -> None:
        target.succeeded += counts.get(states.SUCCESS, 0)
        target.failed += counts.get(states.FAILURE, 0)

    for start, counts in settled.items():
        add(day[int((start - day_start) / _BUCKET)], counts)
        for state, n in counts.items():
            finished_day[state] += n
    for minute, counts in fresh.items():
        index = int((minute - day_start) / _BUCKET)
        if 0 <= index < len(day):
            add(day[index], counts)
        for state, n in counts.items():
            finished_day[state] += n
            if minute >= hour_start:
                finished_hour[state] += n
        if minute >= hour_start:
            add(minutes[int((minute - hour_start) / dt.timedelta(minutes=1))], counts)
    return minutes, day, finished_hour, finished_day


def _percentile(sorted_values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (what ``percentile_cont`` does)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = p * (len(sorted_values) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


class _PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(p) WITHIN GROUP (ORDER BY expr)``."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


def _runtimes(now: dt.datetime) -> tuple[list[Runtime], dt.timedelta, int]:
    """p50/p95 runtime per task name over the last hour's latest successes.

    At most :data:`RUNTIME_SAMPLE` rows: when the last hour holds more, the
    window shrinks to the time they span (found with one offset read of the
    done index), so the cost does not grow with throughput.
    """
    successes = tasks().filter(state=states.SUCCESS, runtime__isnull=False)
    since = now - HOUR
    cutoff = (
        successes.filter(done_at__gte=since)
        .order_by("-done_at")
        .values_list("done_at", flat=True)[RUNTIME_SAMPLE - 1 : RUNTIME_SAMPLE]
    )
    cutoff_value = next(iter(cutoff), None)
    if cutoff_value is not None:
        since = cutoff_value
    window = successes.filter(done_at__gte=since)
    result = []
    if queue.is_postgres():
        rows = (
            window.values("name")
            .annotate(
                n=Count("pk"),
                p50=_PercentileCont("runtime", 0.5),
                p95=_PercentileCont("runtime", 0.95),
                top=Max("runtime"),
            )
            .order_by("-n", "name")[:15]
        )
        result = [Runtime(r["name"], r["n"], r["p50"], r["p95"], r["top"]) for r in rows]
    else:
        by_name: dict[str, list[float]] = defaultdict(list)
        for name, runtime in window.values_list("name", "runtime")[:RUNTIME_SAMPLE]:
            by_name[name].append(runtime)
        for name, values in by_name.items():
            values.sort()
            result.append(
                Runtime(
                    name,
                    len(values),
                    _percentile(values, 0.5),
                    _percentile(values, 0.95),
                    values[-1],
                )
            )
        result.sort(key=lambda r: (-r.count, r.name))
        result = result[:15]
    return result, now - since, sum(r.count for r in result)


def duration(seconds: float | None) -> str:
    """``0.0123`` → ``"12 ms"``, ``75`` → ``"1 min 15 s"``."""
    if seconds is None:
        return ""
    if seconds < 1:
        if seconds <= 0:
            return "0 ms"
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


# -- charts -----------------------------------------------------------------------

CHART_WIDTH = 600
CHART_HEIGHT = 120


def bar_chart(buckets: list[Bucket], per_minute: float = 1.0) -> dict[str, Any]:
    """Geometry of a stacked bar chart (succeeded under failed) for an inline SVG.

    ``per_minute`` divides each bucket to show a rate per minute (a bucket of
    15 minutes → 15).
    """
    peak = max((b.succeeded + b.failed for b in buckets), default=0)
    scale_max = _nice_ceiling(peak / per_minute) if peak else 1
    slot = CHART_WIDTH / max(1, len(buckets))
    bar_width = max(1.0, slot * 0.8)
    bars = []
    for i, b in enumerate(buckets):
        ok = b.succeeded / per_minute
        bad = b.failed / per_minute
        ok_h = CHART_HEIGHT * ok / scale_max
        bad_h = CHART_HEIGHT * bad / scale_max
        bars.append(
            {
                "x": round(i * slot + (slot - bar_width) / 2, 2),
                "width": round(bar_width, 2),
                "ok_y": round(CHART_HEIGHT - ok_h, 2),
                "ok_h": round(ok_h, 2),
                "bad_y": round(CHART_HEIGHT - ok_h - bad_h, 2),
                "bad_h": round(bad_h, 2),
                "start": b.start,
                "succeeded": b.succeeded,
                "failed": b.failed,
            }
        )
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "bars": bars,
        "max": scale_max,
        "mid": scale_max / 2,
        "per_minute": per_minute,
        "total_ok": sum(b.succeeded for b in buckets),
        "total_bad": sum(b.failed for b in buckets),
    }


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is at least ``value``."""
    if value <= 0:
        return 1
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


# -- id windows -------------------------------------------------------------------


def uuid7_floor(when: dt.datetime) -> uuid.UUID:
    """The smallest UUIDv7 of the millisecond ``when``.

    Task ids are UUIDv7 (:mod:`djtasks.ids`), so "ids made between two times"
    is a range scan of the primary key: how the detail page finds a task's
    children and group without an index on those columns.
    """
    ms = int(when.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0x2 << 62))
