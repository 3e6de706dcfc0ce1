"""``GET metrics``: the queue's figures in Prometheus's text format (0.0.4).

Computed from the database at each scrape, in six bounded queries (see
:func:`collect`), so every web process answers the same and nothing runs
in the background.

**Windows, not counters.** A Prometheus counter must only go up. A count
of rows cannot promise that: finished rows are deleted after
``DJTASKS_RESULT_EXPIRES``, and counting all history on each scrape would read
the whole table. A counter kept in the web process would go up, but each
process would keep its own, and a scrape that lands on another process
would look like a reset. So the task figures are **gauges over a trailing
window** of ``DJTASKS_METRICS_WINDOW`` seconds (300 by default, exported as
``djtasks_metrics_window_seconds``): "tasks that failed in the last five
minutes", which can go down. The runtime distribution is a *gauge
histogram* over the same window; text format 0.0.4 has no such type, so it
is written as ``prometheus_client`` writes its ``GaugeHistogram``:
``_bucket`` series under ``TYPE histogram``, and ``_gcount``/``_gsum``
gauges. Use ``histogram_quantile()`` on its buckets directly, never over a
``rate()``. The one true counter is ``djtasks_worker_processed_total``, each
worker's own count of tasks since it started (a restart resets it, as
Prometheus expects of counters).

**A tiny writer, not prometheus_client.** That library's value is in-process
registries and its multiprocess mode; here every value comes from the
database per scrape, so what would be left of it is the formatting: the
fifty lines below, with no dependency for djtasks users. The tests parse the
output with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, Sum

from .. import control, dashboard, states
from ..conf import settings
from ..dashboard import uuid7_floor
from . import reads

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds (seconds) of the runtime histogram's buckets.
RUNTIME_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)


# -- the writer ----------------------------------------------------------------------


@dataclass
class Family:
    """One metric: its name, type, help, and samples ``(suffix, labels, value)``."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: Any) -> None:
        self.samples.append((suffix, {k: str(v) for k, v in labels.items()}, value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def write(families: Iterable[Family]) -> str:
    """The text exposition format: ``# HELP``, ``# TYPE``, then the samples."""
    lines = []
    for f in families:
        lines.append(
            f"# HELP {f.name} {f.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}"
        )
        lines.append(f"# TYPE {f.name} {f.type}")
        for suffix, labels, value in f.samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(
                f"{f.name}{suffix}{{{text}}} {_number(value)}"
                if text
                else f"{f.name}{suffix} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


# -- the figures ----------------------------------------------------------------------


def _bucket_key(bound: float) -> str:
    return f"le_{str(bound).replace('.', '_')}"


def _finished(start: dt.datetime) -> list[dict[str, Any]]:
    """Tasks finished since ``start`` by queue, task and state: one range of the
    ``(state, done_at)`` index per final state."""
    buckets = {_bucket_key(b): Count("pk", filter=Q(runtime__lte=b)) for b in RUNTIME_BUCKETS}
    return list(
        reads.tasks()
        .filter(state__in=states.READY_STATES, done_at__gte=start)
        .values("queue", "name", "state")
        .annotate(
            n=Count("pk"),
            retries=Sum("retries"),
            runtime_n=Count("runtime"),
            runtime_sum=Sum("runtime"),
            claimed=Count("pk", filter=Q(received_at__gte=start)),
            **buckets,
        )
        .order_by()
    )


def _enqueued(start: dt.datetime, now: dt.datetime) -> dict[str, int]:
    """Tasks created since ``start`` by queue: a primary-key range (ids are
    UUIDv7, so ordered by creation time); ids given by callers that are not
    UUIDv7 fall outside it, but for a few by chance."""
    rows = (
        reads.tasks()
        .filter(
            pk__gte=uuid7_floor(start),
            pk__lt=uuid7_floor(now + dt.timedelta(minutes=1)),
            created_at__gte=start,
        )
        .values_list("queue")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return dict(rows)


def collect(now: dt.datetime) -> list[Family]:
    """Every metric, from: the waiting rows and the held rows (grouped), the
    finished rows of the window, the rows created in it, the paused queues
    and the worker rows."""
    began = time.perf_counter()
    window = float(settings.METRICS_WINDOW)
    start = now - dt.timedelta(seconds=window)
    backlog = reads.unfinished(now, claimed_since=start)
    finished = _finished(start)
    enqueued = _enqueued(start, now)
    workers = control.status(now)

    unfinished = Family(
        "djtasks_tasks_unfinished",
        "gauge",
        "Tasks not finished now, by state (PENDING, RETRY, RECEIVED, STARTED).",
    )
    for (state, queue_name, task), n in sorted(backlog.by_state.items()):
        unfinished.add(n, state=state, queue=queue_name, task=task)

    done = Family(
        "djtasks_tasks_finished_window",
        "gauge",
        f"Tasks that finished in the last {window:g} s, by final state "
        "(SUCCESS, FAILURE, REVOKED). A window, not a counter.",
    )
    retries = Family(
        "djtasks_task_retries_window",
        "gauge",
        f"Retries made by the tasks that finished in the last {window:g} s "
        "(the sum of their retry counts).",
    )
    runtime = Family(
        "djtasks_task_runtime_window_seconds",
        "histogram",
        f"Runtime of the tasks that finished in the last {window:g} s. A gauge "
        "histogram: use histogram_quantile() on the buckets, without rate().",
    )
    runtime_count = Family(
        "djtasks_task_runtime_window_seconds_gcount",
        "gauge",
        f"Tasks with a runtime that finished in the last {window:g} s.",
    )
    runtime_sum = Family(
        "djtasks_task_runtime_window_seconds_gsum",
        "gauge",
        f"Sum of the runtimes of the tasks that finished in the last {window:g} s.",
    )
    per_task: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    retried: dict[str, int] = defaultdict(int)
    claimed: dict[str, float] = defaultdict(float)
    for row in finished:
        done.add(row["n"], state=row["state"], queue=row["queue"], task=row["name"])
        retried[row["name"]] += row["retries"] or 0
        claimed[row["queue"]] += row["claimed"]
        sums = per_task[row["name"]]
        sums["count"] += row["runtime_n"]
        sums["sum"] += row["runtime_sum"] or 0.0
        for bound in RUNTIME_BUCKETS:
            sums[_bucket_key(bound)] += row[_bucket_key(bound)]
    for task, n in sorted(retried.items()):
        retries.add(n, task=task)
    for task, sums in sorted(per_task.items()):
        if not sums["count"]:
            continue
        for bound in RUNTIME_BUCKETS:
            runtime.add(sums[_bucket_key(bound)], "_bucket", task=task, le=_number(bound))
        runtime.add(sums["count"], "_bucket", task=task, le="+Inf")
        runtime_count.add(sums["count"], task=task)
        runtime_sum.add(sums["sum"], task=task)
    for (queue_name, _task), n in backlog.claimed_since.items():
        claimed[queue_name] += n

    enqueue_rate = Family(
        "djtasks_tasks_enqueued_per_second",
        "gauge",
        f"Tasks enqueued per second, averaged over the last {window:g} s.",
    )
    for queue_name, n in sorted(enqueued.items()):
        enqueue_rate.add(n / window, queue=queue_name)
    claim_rate = Family(
        "djtasks_tasks_claimed_per_second",
        "gauge",
        f"Tasks claimed by workers per second, averaged over the last "
        f"{window:g} s (a task claimed twice in the window counts once).",
    )
    for queue_name, n in sorted(claimed.items()):
        claim_rate.add(n / window, queue=queue_name)

    depth = Family("djtasks_queue_depth", "gauge", "Tasks ready to run now (eta reached).")
    scheduled = Family(
        "djtasks_queue_scheduled", "gauge", "Tasks waiting for their eta (countdowns, retries)."
    )
    running = Family("djtasks_queue_running", "gauge", "Tasks claimed or running.")
    oldest = Family(
        "djtasks_queue_oldest_waiting_seconds",
        "gauge",
        "How long the oldest ready task has waited past its eta (0 when none).",
    )
    paused = Family("djtasks_queue_paused", "gauge", "1 when the queue is paused.")
    for q in sorted(backlog.queues.values(), key=lambda q: q.name):
        depth.add(q.ready, queue=q.name)
        scheduled.add(q.scheduled, queue=q.name)
        running.add(q.running, queue=q.name)
        oldest.add(q.oldest_age(now) or 0.0, queue=q.name)
        paused.add(int(q.paused), queue=q.name)

    online_total = Family(
        "djtasks_workers_online",
        "gauge",
        "Workers whose heartbeat is recent (taskctl status's 'online').",
    )
    online_total.add(sum(w.state == control.ONLINE for w in workers))
    online = Family(
        "djtasks_worker_online",
        "gauge",
        "1 when the worker is online; workers stopped in the last day show 0.",
    )
    concurrency = Family("djtasks_worker_concurrency", "gauge", "Pool size of the worker.")
    held = Family("djtasks_worker_running", "gauge", "Tasks the worker holds (claimed or running).")
    processed = Family(
        "djtasks_worker_processed_total",
        "counter",
        "Tasks the worker process has finished since it started.",
    )
    heartbeat = Family(
        "djtasks_worker_last_heartbeat_timestamp_seconds",
        "gauge",
        "Unix time of the worker's last heartbeat.",
    )
    for w in workers:
        online.add(int(w.state == control.ONLINE), worker=w.name)
        concurrency.add(w.concurrency, worker=w.name)
        held.add(backlog.running_by_worker.get(w.name, 0), worker=w.name)
        processed.add(w.processed, worker=w.name)
        heartbeat.add(w.last_seen.timestamp(), worker=w.name)

    meta = [
        Family(
            "djtasks_metrics_window_seconds",
            "gauge",
            "The trailing window of the *_window metrics and the rates.",
        )
    ]
    meta[0].add(window)
    estimate = dashboard.estimated_total()
    if estimate is not None:
        rows = Family(
            "djtasks_task_table_rows_estimate",
            "gauge",
            "Rows in the task table, as PostgreSQL estimates them (no scan).",
        )
        rows.add(estimate)
        meta.append(rows)
    took = Family(
        "djtasks_metrics_scrape_duration_seconds", "gauge", "Time spent computing these metrics."
    )
    took.add(round(time.perf_counter() - began, 6))
    meta.append(took)
    return [
        unfinished,
        done,
        retries,
        runtime,
        runtime_count,
        runtime_sum,
        enqueue_rate,
        claim_rate,
        depth,
        scheduled,
        running,
        oldest,
        paused,
        online_total,
        online,
        concurrency,
        held,
        processed,
        heartbeat,
        *meta,
    ]


def render(now: dt.datetime) -> str:
    return write(collect(now))
