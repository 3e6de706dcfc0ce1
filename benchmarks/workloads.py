"""The workloads of issue 8 (W1-W4 and the extras) and issue 3 (latency,
concurrent enqueuers). Each runs in a driver process with Django set up on
the benchmark database, and returns its metrics as a dict.

Conventions: ``*_tps`` are tasks per second, ``*_ms`` milliseconds; a
``checks`` dict says whether what was measured is valid (a rate whose
tasks did not all run exactly once is not a rate).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection
from django.utils import timezone

from djtasks import queue
from djtasks.models import TaskRecord

from . import harness as h
from .sizes import Size
from .tasks import latency, noop


@dataclass
class Context:
    size: Size
    workdir: Path
    loglevel: str = "WARNING"
    run: int = 1


# -- W1: one .delay() per transaction -----------------------------------------


def w1(ctx: Context) -> dict[str, Any]:
    """``.delay()`` one call at a time, each its own autocommit transaction."""
    h.reset_tables()
    h.settle_database()
    counters = h.db_counters()
    result = _delay_loop(ctx.size.w1_calls)
    result["db_per_task"] = h.db_per_task(counters, h.db_counters(), ctx.size.w1_calls + 20)
    return result


def _delay_loop(calls: int, warmup: int = 20) -> dict[str, Any]:
    for i in range(warmup):  # connection, statement caches, imports: not timed
        noop.delay(-1 - i)
    durations = []
    clock = time.perf_counter
    begin = clock()
    for i in range(calls):
        t = clock()
        noop.delay(i)
        durations.append(clock() - t)
    elapsed = clock() - begin
    return {
        "tps": calls / elapsed,
        "calls": calls,
        "elapsed_s": elapsed,
        "call_p50_ms": h.percentile(durations, 50) * 1000,
        "call_p99_ms": h.percentile(durations, 99) * 1000,
    }


# -- W2 / W4 / realistic: drain a backlog -------------------------------------


def _drain(
    ctx: Context,
    name: str,
    ids: list[str],
    concurrency: int,
    verify: Callable[[h.Journal], dict[str, Any]],
    journal: h.Journal,
    extra_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    h.settle_database()
    counters = h.db_counters()
    worker = h.start_worker(
        f"bench-{name}-{os.getpid()}",
        ctx.workdir,
        concurrency,
        burst=True,
        loglevel=ctx.loglevel,
        extra_env=journal.env(),
        extra_args=extra_args,
    )
    try:
        # Generous: a broken worker fails the run instead of hanging it.
        code = worker.wait_exit(timeout=120 + len(ids) / 50)
    finally:
        worker.kill()
    checks = verify(journal)
    checks["worker_exit_code"] = code
    started, done = h.row_times(ids)
    result = h.drain_rates(started, done, worker.spawned_at)
    result["tasks"] = len(ids)
    result["concurrency"] = concurrency
    result["checks"] = checks
    # Commits, row writes and WAL per task: what the hot path asks of the database.
    time.sleep(0.6)  # the worker's backends have exited; let their stats land
    result["db_per_task"] = h.db_per_task(counters, h.db_counters(), len(ids))
    return result


def w2(ctx: Context) -> dict[str, Any]:
    """A backlog drained by one ``taskworker -c 2`` (default pool, ``--burst``).

    Exactly once is checked by the journal of ``bench.noop_verified``; with
    ``DJTASKS_BENCH_W2_VERIFY=table`` (``--w2-verify table``) each task
    INSERTs its id into a UNIQUE column instead, a database-level check that
    costs each task a round trip and a commit.
    """
    h.reset_tables()
    mode = os.environ.get("DJTASKS_BENCH_W2_VERIFY", "journal")
    if mode == "rows":  # the plain no-op; only the rows' attempt column says "once"
        ids = h.load("bench.noop", ctx.size.w2_tasks, ctx.size.load_chunk)
        result = _drain(ctx, "w2", ids, 2, lambda _: _rows_once(ids), h.Journal(ctx.workdir / "j"))
        result["verify"] = "rows"
        return result
    if mode == "table":
        ids = h.load("bench.noop_recorded", ctx.size.w2_tasks, ctx.size.load_chunk)
        result = _drain(ctx, "w2", ids, 2, lambda _: _executions(ids), h.Journal(ctx.workdir / "j"))
        result["verify"] = "table"
        return result
    ids = h.load("bench.noop_verified", ctx.size.w2_tasks, ctx.size.load_chunk)
    journal = h.Journal(ctx.workdir / "journal-w2")
    result = _drain(ctx, "w2", ids, 2, lambda j: h.check_exactly_once(ids, j), journal)
    result["verify"] = "journal"
    return result


def _rows_once(ids: list[str]) -> dict[str, Any]:
    states = h.state_counts()
    attempts = dict(collections.Counter(TaskRecord.objects.values_list("attempt", flat=True)))
    return {
        "exactly_once": states == {"SUCCESS": len(ids)} and attempts == {1: len(ids)},
        "row_states": states,
        "row_attempts": {str(k): v for k, v in attempts.items()},
    }


def _executions(ids: list[str]) -> dict[str, Any]:
    """Exactly once from ``benchmarks_execution``: its task_id is UNIQUE, so a
    second run fails its INSERT and leaves its row FAILURE."""
    from .models import Execution

    ran = {str(t) for t in Execution.objects.values_list("task_id", flat=True)}
    states = h.state_counts()
    attempts = dict(collections.Counter(TaskRecord.objects.values_list("attempt", flat=True)))
    return {
        "exactly_once": ran == set(ids)
        and states == {"SUCCESS": len(ids)}
        and attempts == {1: len(ids)},
        "executions": len(ran),
        "row_states": states,
        "row_attempts": {str(k): v for k, v in attempts.items()},
    }


def w4(ctx: Context) -> dict[str, Any]:
    """W2 on a table that carries history (see :func:`build_history`).

    Reading of the issue: the pending rows sit in the queue the worker
    consumes, in its ready index, but are due tomorrow; so the claim's index
    range is as deep as a real backlog while the worker drains exactly the
    W4 tasks. ``DJTASKS_BENCH_W4_PENDING=other-queue`` puts them in a queue
    the worker does not consume; ``same-queue`` makes them due now (the
    worker then stops after the W4 count with ``--max-tasks``).
    """
    size = ctx.size
    mode = os.environ.get("DJTASKS_BENCH_W4_PENDING", "future-eta")
    finished_before = h.count_rows(state="SUCCESS")
    if mode == "future-eta":
        h.load(
            "bench.noop",
            size.w4_pending,
            size.load_chunk,
            eta=timezone.now() + dt.timedelta(days=1),
        )
    elif mode == "other-queue":
        h.load("bench.noop", size.w4_pending, size.load_chunk, queue_name="bench-other")
    elif mode != "same-queue":
        raise h.BenchmarkError(f"unknown DJTASKS_BENCH_W4_PENDING={mode!r}")
    ids = h.load("bench.noop_verified", size.w4_tasks, size.load_chunk)
    if mode == "same-queue":
        h.load("bench.noop_verified", size.w4_pending, size.load_chunk, start=size.w4_tasks)
    journal = h.Journal(ctx.workdir / "journal-w4")

    def verify(j: h.Journal) -> dict[str, Any]:
        if mode == "same-queue":
            # The worker ran some W4 count of the 105,000: which ones is its choice.
            ran = list(j.ids())
            checks = h.check_exactly_once(ran, j)
            checks["ran_at_least_w4_tasks"] = len(ran) >= size.w4_tasks
            ids[:] = ran
            return checks
        checks = h.check_exactly_once(ids, j)
        pending = h.count_rows(state="PENDING")
        checks["pending_untouched"] = pending == size.w4_pending
        checks["history_kept"] = h.count_rows(state="SUCCESS") == finished_before + len(ids)
        return checks

    extra = ("--max-tasks", str(size.w4_tasks)) if mode == "same-queue" else ()
    result = _drain(ctx, "w4", ids, 2, verify, journal, extra)
    result["pending_mode"] = mode
    result["finished_rows_before"] = finished_before
    result["table_rows"] = h.count_rows()
    for label, ms in admin_timings(ids[0]).items():
        result[f"admin_{label}_ms"] = ms
    if h.postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_total_relation_size(%s), pg_relation_size(%s)",
                [TaskRecord._meta.db_table] * 2,
            )
            total, heap = cursor.fetchone()
        result["table_total_mib"] = round(total / 2**20, 1)
        result["table_heap_mib"] = round(heap / 2**20, 1)
    return result


#: The admin pages W4 times on its table, by label: (query string, what it shows).
ADMIN_PAGES = {
    "list": "",
    "failed": "?state=FAILURE",
    "pending": "?state=PENDING",
    "by_name": "?name=bench.noop_verified",
    "search_id": "?q={task_id}",
}


def admin_timings(task_id: str, rounds: int = 5) -> dict[str, float]:
    """Median milliseconds to render the admin's task list on W4's table, as a
    superuser in a browser would get it (the whole response, in process)."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    url = reverse("admin:djtasks_taskrecord_changelist")
    timings: dict[str, float] = {}
    for label, query in ADMIN_PAGES.items():
        page = url + query.format(task_id=task_id)
        times = []
        for _ in range(rounds + 1):  # the first one warms caches and is not counted
            start = time.perf_counter()
            response = client.get(page)
            times.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise h.BenchmarkError(f"admin {page}: HTTP {response.status_code}")
        timings[label] = round(statistics.median(times[1:]), 1)
    return timings


def _realistic(ctx: Context, concurrency: int) -> dict[str, Any]:
    h.reset_tables()
    ids = h.load("bench.realistic", ctx.size.realistic_tasks, ctx.size.load_chunk)
    return _drain(
        ctx,
        f"real{concurrency}",
        ids,
        concurrency,
        lambda _: _executions(ids),
        h.Journal(ctx.workdir / "j"),
    )


def realistic2(ctx: Context) -> dict[str, Any]:
    """1 ms of CPU and one INSERT per task, ``-c 2``."""
    return _realistic(ctx, 2)


def realistic8(ctx: Context) -> dict[str, Any]:
    """1 ms of CPU and one INSERT per task, ``-c 8``."""
    return _realistic(ctx, 8)


# -- W3: idle worker, enqueue → start latency ---------------------------------


def w3(ctx: Context) -> dict[str, Any]:
    """An idle worker; tasks enqueued ``w3_gap`` apart; latency from a
    timestamp taken just before ``.delay()`` to ``time.time()`` as the task
    starts (its return value)."""
    size = ctx.size
    h.reset_tables()
    h.settle_database()
    worker = h.start_worker(f"bench-w3-{os.getpid()}", ctx.workdir, 2, loglevel=ctx.loglevel)
    try:
        worker.wait_ready()
        # Warm-up: the children's first task imports and connects.
        warm = [latency.delay(time.time()).id for _ in range(5)]
        h.wait_for(lambda: h.count_rows(state="SUCCESS") >= len(warm), 60, "warm-up", worker=worker)
        time.sleep(0.5)  # idle again: waiting on LISTEN (PostgreSQL) or its poll
        sent: dict[str, float] = {}
        delay_s = []
        begin = time.monotonic()
        for i in range(size.w3_tasks):
            pause = begin + i * size.w3_gap - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            t0 = time.time()
            result = latency.delay(t0)
            delay_s.append(time.time() - t0)
            sent[str(result.id)] = t0
        total = len(warm) + len(sent)
        h.wait_for(
            lambda: h.count_rows(state="SUCCESS") >= total, 60, "the W3 tasks", worker=worker
        )
    finally:
        code = worker.stop()
    rows = TaskRecord.objects.filter(id__in=[uuid.UUID(i) for i in sent]).values_list(
        "id", "result", "received_at", "started_at"
    )
    lat, claim, mark, handoff = [], [], [], []
    for tid, result, received_at, started_at in rows:
        t0 = sent[str(tid)]
        began = float(json.loads(result))
        lat.append(began - t0)
        claim.append(h.epoch(received_at) - t0)
        mark.append(h.epoch(started_at) - h.epoch(received_at))
        handoff.append(began - h.epoch(started_at))
    ms = 1000.0
    return {
        "p50_ms": h.percentile(lat, 50) * ms,
        "p95_ms": h.percentile(lat, 95) * ms,
        "p99_ms": h.percentile(lat, 99) * ms,
        "max_ms": max(lat) * ms,
        "tasks": len(lat),
        # Where the median goes: the enqueue's own commit, then NOTIFY/poll →
        # claim, claim → marked STARTED, STARTED → first line of the task.
        "delay_call_p50_ms": h.percentile(delay_s, 50) * ms,
        "to_claim_p50_ms": h.percentile(claim, 50) * ms,
        "claim_to_started_p50_ms": h.percentile(mark, 50) * ms,
        "started_to_run_p50_ms": h.percentile(handoff, 50) * ms,
        "checks": {"all_ran": len(lat) == size.w3_tasks, "worker_exit_code": code},
    }


# -- memory -------------------------------------------------------------------


def memory(ctx: Context) -> dict[str, Any]:
    """RSS/PSS of the worker and its children while it runs ``memory_tasks`` no-ops."""
    n = ctx.size.memory_tasks
    h.reset_tables()
    ids = h.load("bench.noop_verified", n, ctx.size.load_chunk)
    h.settle_database()
    journal = h.Journal(ctx.workdir / "journal-mem")
    worker = h.start_worker(
        f"bench-mem-{os.getpid()}", ctx.workdir, 2, loglevel=ctx.loglevel, extra_env=journal.env()
    )
    marks = [0.05, 0.25, 0.5, 0.75, 1.0]
    samples: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 120 + n / 50
        while marks:
            done = journal.lines()
            if done >= marks[0] * n:
                if marks[0] == 1.0:
                    time.sleep(0.3)  # the last outcomes written, buffers settled
                sample = worker.memory()
                sample["tasks_done"] = journal.lines()
                samples.append(sample)
                marks.pop(0)
                continue
            if not worker.alive():
                raise h.BenchmarkError(f"worker exited early:\n{worker.output()}")
            if time.monotonic() > deadline:
                raise h.BenchmarkError(f"memory workload: only {done} of {n} tasks ran")
            time.sleep(0.05)
        h.wait_for(lambda: h.count_rows(state="SUCCESS") >= n, 60, "outcomes", worker=worker)
    finally:
        code = worker.stop()
    checks = h.check_exactly_once(ids, journal)
    checks["worker_exit_code"] = code
    first, last = samples[0], samples[-1]

    def kib(sample: dict[str, Any], key: str) -> int:
        return int(sample["parent"].get(key, 0))

    return {
        "parent_rss_mib": kib(last, "rss_kib") / 1024,
        "children_rss_mib": last["children_rss_kib"] / 1024,
        "children_pss_mib": last["children_pss_kib"] / 1024,
        "parent_rss_growth_mib": (kib(last, "rss_kib") - kib(first, "rss_kib")) / 1024,
        "children_rss_growth_mib": (last["children_rss_kib"] - first["children_rss_kib"]) / 1024,
        "tasks": n,
        "samples": samples,
        "checks": checks,
    }


# -- concurrent enqueuers -----------------------------------------------------


def enqueue4(ctx: Context) -> dict[str, Any]:
    """``enqueuers`` processes each making ``enqueuer_calls`` ``.delay()`` calls
    (one transaction each), released at the same instant."""
    size = ctx.size
    h.reset_tables()
    h.settle_database()
    go_r, go_w = os.pipe()
    procs = []
    outs = []
    for i in range(size.enqueuers):
        out = ctx.workdir / f"enqueuer-{i}.json"
        outs.append(out)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.driver",
                    "enqueue-part",
                    "--calls",
                    str(size.enqueuer_calls),
                    "--go-fd",
                    str(go_r),
                    "--out",
                    str(out),
                ],
                cwd=h.ROOT,
                pass_fds=(go_r,),
            )
        )
    os.close(go_r)
    # Each part is set up and connected when its ready file appears.
    h.wait_for(lambda: all(Path(f"{o}.ready").exists() for o in outs), 120, "enqueuers to be ready")
    os.close(go_w)  # EOF on the pipe: every enqueuer starts now
    codes = [p.wait(600) for p in procs]
    if any(codes):
        raise h.BenchmarkError(f"an enqueuer failed (exit codes {codes})")
    parts = [json.loads(o.read_text()) for o in outs]
    begin = min(p["begin"] for p in parts)
    end = max(p["end"] for p in parts)
    total = sum(p["calls"] for p in parts)
    return {
        "tps": total / (end - begin),
        "per_process_tps": [round(p["tps"], 1) for p in parts],
        "processes": len(parts),
        "calls": total,
        "call_p50_ms": h.percentile([p["call_p50_ms"] for p in parts], 50),
        "call_p99_ms": max(p["call_p99_ms"] for p in parts),
        "notify_suppressed": parts[0]["notify_suppressed"],
        "checks": {"all_rows": h.count_rows() == total + 20 * len(parts)},
    }


def suppress_notify() -> str:
    """Make this process's enqueues send no NOTIFY, for the comparison run;
    return how (the library has no switch for it, so this uses its coalescing
    window: one NOTIFY per process, during the untimed warm-up)."""
    from djtasks.conf import DEFAULTS

    switches = [n for n, v in DEFAULTS.items() if "NOTIFY" in n and isinstance(v, bool)]
    if switches:
        return f"setting DJTASKS_{switches[0]} (passed by the harness)"
    if hasattr(queue, "NOTIFY_COALESCE"):
        queue.NOTIFY_COALESCE = 1e9  # type: ignore[attr-defined]
        return "djtasks.queue.NOTIFY_COALESCE = 1e9 (one NOTIFY per process, in the warm-up)"
    raise h.BenchmarkError("no way to turn NOTIFY off in this version of djtasks")


def enqueue_part(calls: int, go_fd: int, out: Path) -> None:
    """One of :func:`enqueue4`'s processes."""
    how = suppress_notify() if os.environ.get("DJTASKS_BENCH_NO_NOTIFY") == "1" else None
    connection.ensure_connection()
    Path(f"{out}.ready").write_text("")
    os.read(go_fd, 1)  # blocks until the parent closes its end
    begin = time.time()
    result = _delay_loop(calls)
    result["begin"] = begin
    result["end"] = time.time()
    result["notify_suppressed"] = how
    out.write_text(json.dumps(result))


# -- bulk ---------------------------------------------------------------------


def bulk(ctx: Context) -> dict[str, Any]:
    """``queue.enqueue(list_of_Message)`` in chunks, each chunk one statement
    and one commit; the time includes building and encoding the messages."""
    size = ctx.size
    h.reset_tables()
    h.settle_database()
    clock = time.perf_counter
    building = 0.0
    begin = clock()
    for lo in range(0, size.bulk_tasks, size.bulk_chunk):
        t = clock()
        batch = h.messages("bench.noop", ([i] for i in range(lo, lo + size.bulk_chunk)))
        building += clock() - t
        queue.enqueue(batch)
    elapsed = clock() - begin
    return {
        "tps": size.bulk_tasks / elapsed,
        "chunk": size.bulk_chunk,
        "tasks": size.bulk_tasks,
        "build_share": building / elapsed,
        "checks": {"all_rows": h.count_rows() == size.bulk_tasks},
    }


def bulk_delay(ctx: Context) -> dict[str, Any]:
    """The public bulk API, ``Task.bulk_delay(calls)``, in calls of ``bulk_chunk``
    tasks (each its own transaction, as the library does it)."""
    size = ctx.size
    if not hasattr(noop, "bulk_delay"):
        raise h.BenchmarkError("this djtasks has no Task.bulk_delay")
    h.reset_tables()
    h.settle_database()
    clock = time.perf_counter
    begin = clock()
    for lo in range(0, size.bulk_tasks, size.bulk_chunk):
        noop.bulk_delay([(i,) for i in range(lo, lo + size.bulk_chunk)])
    elapsed = clock() - begin
    return {
        "tps": size.bulk_tasks / elapsed,
        "chunk": size.bulk_chunk,
        "tasks": size.bulk_tasks,
        "checks": {"all_rows": h.count_rows() == size.bulk_tasks},
    }


# -- W4's history -------------------------------------------------------------


def build_history(ctx: Context) -> dict[str, Any]:
    """Make ``w4_finished`` finished rows by running them through the queue's
    write path, so the table carries the dead tuples, index churn and
    autovacuum history of real use (never bulk-inserted as SUCCESS).

    ``DJTASKS_BENCH_HISTORY=direct`` (default) drives the worker's own
    statements in this process: ``queue.claim`` a batch, then one
    ``queue.settle`` that finishes the previous batch and starts this one, as
    the worker's loop does, but without child processes (minutes at full
    size). ``worker`` runs a real ``taskworker -c 2`` fed in chunks instead,
    as slow as the worker is (tens of minutes at full size today).
    """
    how = os.environ.get("DJTASKS_BENCH_HISTORY", "direct")
    total = ctx.size.w4_finished
    h.reset_tables()
    begin = time.time()
    vacuum = _Autovacuum()
    if how == "worker":
        code = _history_by_worker(ctx, total, vacuum)
    elif how == "direct":
        code = _history_direct(ctx, total, vacuum)
    else:
        raise h.BenchmarkError(f"unknown DJTASKS_BENCH_HISTORY={how!r}")
    states = h.state_counts()
    if states != {"SUCCESS": total}:
        raise h.BenchmarkError(f"history has rows in {states}, wanted {total} SUCCESS")
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
    return {
        "finished_rows": total,
        "seconds": time.time() - begin,
        "history": how,
        "vacuum": vacuum.describe(),
        "worker_exit_code": code,
    }


def _progress(begin: float, done: int, total: int, last: list[float]) -> None:
    if time.time() - last[0] > 30:
        last[0] = time.time()
        print(
            f"  history: {done:,} of {total:,} rows finished ({time.time() - begin:.0f}s)",
            file=sys.stderr,
            flush=True,
        )


class _Autovacuum:
    """Stands in for autovacuum while the history is built, if the server has
    it off (CI configurations do): VACUUM the task table whenever its dead
    rows pass autovacuum's threshold for it, the table's own settings if it
    has them (djtasks' migration 0006 sets 1,000 + 1 %), else the server's
    (50 + 20 %). Without it a million finished rows would carry three million
    dead versions, which real use never does.

    The daemon looks once per ``autovacuum_naptime`` (1 min). The history is
    built about a hundred times faster than real use would make it, so the
    stand-in looks once per ``LOOK_EVERY`` finished rows instead, as if a nap
    passed between them; in wall-clock minutes it would let a few hundred
    thousand dead rows pile up, a debt real use at that pace never runs."""

    LOOK_EVERY = 10_000

    def __init__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            self.server_on = cursor.fetchone()[0] == "on"
            cursor.execute("SHOW autovacuum_vacuum_threshold")
            self.threshold = float(cursor.fetchone()[0])
            cursor.execute("SHOW autovacuum_vacuum_scale_factor")
            self.scale = float(cursor.fetchone()[0])
            cursor.execute(
                "SELECT reloptions FROM pg_class WHERE relname = %s",
                [TaskRecord._meta.db_table],
            )
            for option in cursor.fetchone()[0] or []:
                name, _, value = option.partition("=")
                if name == "autovacuum_vacuum_threshold":
                    self.threshold = float(value)
                elif name == "autovacuum_vacuum_scale_factor":
                    self.scale = float(value)
        self.vacuums = 0
        self._done_at_last = 0
        self._next_look = self.LOOK_EVERY

    def after(self, done: int, rows: int) -> None:
        if self.server_on or done < self._next_look:
            return
        self._next_look = done + self.LOOK_EVERY
        # Each finished task left three dead versions (claim, start, finish).
        if 3 * (done - self._done_at_last) <= self.threshold + self.scale * rows:
            return
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {TaskRecord._meta.db_table}")
        self.vacuums += 1
        self._done_at_last = done

    def describe(self) -> str:
        if self.server_on:
            return "autovacuum (the server's)"
        return (
            f"server autovacuum off: {self.vacuums} VACUUMs at the table's autovacuum "
            f"threshold ({self.threshold:.0f} + {self.scale:.0%} of the rows), "
            f"looked at every {self.LOOK_EVERY:,} finished rows"
        )


def _history_direct(ctx: Context, total: int, vacuum: _Autovacuum) -> int:
    from djtasks import states

    me = f"bench-history-{os.getpid()}@direct"
    # Bigger than a -c 2 worker's claim (8) only to be quick: every row still
    # gets the claim, start and finish updates (and index entries) it would.
    batch = 100
    chunk = 10_000
    enqueued = done = taken = 0
    previous: list[queue.Outcome] = []
    begin, last = time.time(), [time.time()]
    while done < total:
        if enqueued - taken < batch and enqueued < total:
            n = min(chunk, total - enqueued)
            h.load("bench.noop", n, ctx.size.load_chunk, start=enqueued)
            enqueued += n
        now = timezone.now()
        claimed = queue.claim(me, ["default"], batch, now, 60)
        taken += len(claimed)
        started = queue.settle(previous, me, claimed, now)
        done += len(previous)
        finished = timezone.now()
        previous = [
            queue.Outcome(
                task_id=c.id,
                attempt=c.attempt,
                state=states.SUCCESS,
                done_at=finished,
                runtime=0.00002,
                result="null",
                result_content_type="application/json",
                task_name=c.name,
            )
            for c in claimed
            if c.id in started
        ]
        if not claimed and not previous and done < total:
            raise h.BenchmarkError(f"history: nothing to claim after {done:,} rows")
        vacuum.after(done, enqueued)
        _progress(begin, done, total, last)
    return 0


def _history_by_worker(ctx: Context, total: int, vacuum: _Autovacuum) -> int | None:
    backlog = max(2_000, min(20_000, total // 10))
    worker = h.start_worker(f"bench-history-{os.getpid()}", ctx.workdir, 2, loglevel="WARNING")
    enqueued = 0
    begin, last = time.time(), [time.time()]
    try:
        worker.wait_ready()
        while True:
            waiting = h.count_rows(state__in=["PENDING", "RETRY", "RECEIVED", "STARTED"])
            if enqueued >= total and waiting == 0:
                break
            if enqueued < total and waiting < backlog:
                n = min(backlog, total - enqueued)
                h.load("bench.noop", n, ctx.size.load_chunk, start=enqueued)
                enqueued += n
            elif not worker.alive():
                raise h.BenchmarkError(f"worker died building history:\n{worker.output()}")
            else:
                time.sleep(0.5)
            vacuum.after(enqueued - waiting, enqueued)
            _progress(begin, enqueued - waiting, total, last)
    finally:
        code = worker.stop()
    return code


WORKLOADS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "realistic2": realistic2,
    "realistic8": realistic8,
    "memory": memory,
    "enqueue4": enqueue4,
    "bulk": bulk,
    "bulk_delay": bulk_delay,
    "build-history": build_history,
}
