"""What every workload needs inside a driver process (Django is set up):
filling and resetting the queue, starting real ``taskworker`` processes,
reading their memory, and turning row timestamps into rates.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db import connection
from django.utils import timezone

from djtasks import queue, serialization
from djtasks.ids import uuid7
from djtasks.models import TaskRecord
from djtasks.models import Worker as WorkerRow

from .tasks import JOURNAL_ENV

ROOT = Path(__file__).resolve().parent.parent
MANAGE_PY = ROOT / "manage.py"
#: Length of one journal line: a UUID's 36 characters and a newline.
JOURNAL_LINE = 37


class BenchmarkError(Exception):
    """The workload could not be measured (a worker died, a check failed to run)."""


def postgres() -> bool:
    return connection.vendor == "postgresql"


# -- the tables ---------------------------------------------------------------


def reset_tables() -> None:
    """Empty every djtasks and benchmark table (new files on PostgreSQL, so no
    dead tuples or bloat carry over from the previous run)."""
    tables = [
        m._meta.db_table
        for label in ("djtasks", "benchmarks")
        for m in apps.get_app_config(label).get_models()
    ]
    with connection.cursor() as cursor:
        if postgres():
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - our own table names
            cursor.execute("VACUUM")


def settle_database() -> None:
    """Before a timed phase: planner statistics, and no checkpoint debt from
    loading, so every run starts from the same place."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TaskRecord._meta.db_table}")
        if postgres():
            cursor.execute("CHECKPOINT")
        else:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def messages(
    name: str,
    arguments: Iterable[Sequence[Any]],
    queue_name: str = "default",
    eta: dt.datetime | None = None,
) -> list[queue.Message]:
    """The messages ``Task.apply_async`` would build, for ``queue.enqueue``."""
    now = timezone.now()
    out = []
    for args in arguments:
        content_type, payload = serialization.encode_arguments(name, list(args), {}, "json")
        out.append(
            queue.Message(
                id=uuid7(),
                name=name,
                queue=queue_name,
                priority=0,
                content_type=content_type,
                payload=payload,
                eta=eta or now,
                created_at=now,
            )
        )
    return out


def load(
    name: str,
    count: int,
    chunk: int,
    queue_name: str = "default",
    eta: dt.datetime | None = None,
    start: int = 0,
) -> list[str]:
    """Queue ``count`` calls of ``name(i)`` with ``queue.enqueue``, ``chunk`` rows per
    statement, each chunk committed; return their ids."""
    ids: list[str] = []
    for lo in range(start, start + count, chunk):
        batch = messages(
            name, ([i] for i in range(lo, min(lo + chunk, start + count))), queue_name, eta
        )
        queue.enqueue(batch)
        ids.extend(str(m.id) for m in batch)
    return ids


def count_rows(**filters: Any) -> int:
    return TaskRecord.objects.filter(**filters).count()


def state_counts() -> dict[str, int]:
    return dict(collections.Counter(TaskRecord.objects.values_list("state", flat=True)))


def db_counters() -> dict[str, float]:
    """PostgreSQL's counters for this database (commits, rows, WAL bytes)."""
    if not postgres():
        return {}
    with connection.cursor() as cursor:
        if connection.pg_version >= 150000:
            # This session's own counts reach the view at most once a second:
            # push them now (the next statement ends a transaction).
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
            "blks_read, blks_hit, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        row = cursor.fetchone()
    names = ["commits", "rollbacks", "inserted", "updated", "deleted", "blks_read", "blks_hit"]
    return {**dict(zip(names, row[:7], strict=True)), "wal_bytes": float(row[7])}


def db_per_task(before: dict[str, float], after: dict[str, float], tasks: int) -> dict[str, float]:
    """What the database did per task between two :func:`db_counters` (the
    worker's backends report when they exit, so read ``after`` once it has)."""
    if not before or not after or not tasks:
        return {}
    return {k: round((after[k] - before[k]) / tasks, 3) for k in before}


# -- journal (exactly once) ---------------------------------------------------


class Journal:
    """A directory where ``bench.noop_verified`` writes the ids it ran, one file
    per process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {JOURNAL_ENV: str(self.directory)}

    def lines(self) -> int:
        """How many ids were written so far (from file sizes: no parsing)."""
        return sum(p.stat().st_size for p in self.directory.glob("*.ids")) // JOURNAL_LINE

    def ids(self) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for path in self.directory.glob("*.ids"):
            counts.update(path.read_text().split())
        return counts

    def processes(self) -> int:
        return len(list(self.directory.glob("*.ids")))


def check_exactly_once(expected: Sequence[str], journal: Journal) -> dict[str, Any]:
    """Every expected id ran exactly once (the journal), its row says SUCCESS
    after one attempt, and nothing else ran."""
    ran = journal.ids()
    wanted = set(expected)
    duplicates = [i for i, n in ran.items() if n > 1]
    missing = wanted - set(ran)
    unexpected = set(ran) - wanted
    rows = TaskRecord.objects.filter(id__in=[uuid.UUID(i) for i in wanted]) if wanted else None
    by_state: dict[str, int] = {}
    attempts: dict[int, int] = {}
    if rows is not None:
        # In chunks: SQLite limits the number of bound parameters.
        ids = [uuid.UUID(i) for i in wanted]
        for lo in range(0, len(ids), 5000):
            part = TaskRecord.objects.filter(id__in=ids[lo : lo + 5000])
            for state, attempt in part.values_list("state", "attempt"):
                by_state[state] = by_state.get(state, 0) + 1
                attempts[attempt] = attempts.get(attempt, 0) + 1
    ok = (
        not duplicates
        and not missing
        and not unexpected
        and by_state == {"SUCCESS": len(wanted)}
        and attempts == {1: len(wanted)}
    )
    return {
        "exactly_once": ok,
        "ran": sum(ran.values()),
        "duplicates": len(duplicates),
        "missing": len(missing),
        "unexpected": len(unexpected),
        "row_states": by_state,
        "row_attempts": {str(k): v for k, v in attempts.items()},
        "journal_files": journal.processes(),
    }


# -- worker processes ---------------------------------------------------------


@dataclass
class WorkerProcess:
    """A real ``manage.py taskworker`` in its own process group."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)  # e.g. a profiler's command line
    process: subprocess.Popen[bytes] | None = None
    spawned_at: float = 0.0

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.env}
        argv = [
            *self.prefix,
            sys.executable,
            str(MANAGE_PY),
            "taskworker",
            "--hostname",
            self.name,
            *self.args,
        ]
        self.spawned_at = time.time()
        with self.log.open("wb") as out:
            # A file, never a pipe: nobody reads a pipe while the worker runs,
            # and a full one would stall it.
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for its worker row (pool forked, loop entered); return when."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise BenchmarkError(
                    f"worker exited with {self.process.returncode if self.process else '?'} "
                    f"before it was ready:\n{self.output()}"
                )
            if WorkerRow.objects.filter(pk=self.name).exists():
                return time.time()
            time.sleep(0.02)
        raise BenchmarkError(f"worker not ready after {timeout}s:\n{self.output()}")

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchmarkError(
                f"worker still running after {timeout:.0f}s (killed):\n{self.output()}"
            ) from None

    def stop(self, timeout: float = 60.0) -> int | None:
        """Warm shutdown (SIGTERM), then SIGKILL to the group if it hangs."""
        if not self.alive():
            return self.process.returncode if self.process else None
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def memory(self) -> dict[str, Any]:
        """RSS and PSS (KiB) of the worker and of each of its children."""
        parent = proc_memory(self.pid)
        children = [proc_memory(pid) for pid in child_pids(self.pid)]
        children = [c for c in children if c]
        return {
            "parent": parent,
            "children": children,
            "children_rss_kib": sum(c["rss_kib"] for c in children),
            "children_pss_kib": sum(c.get("pss_kib", 0) for c in children),
        }


def start_worker(
    name: str,
    workdir: Path,
    concurrency: int,
    queues: Sequence[str] = ("default",),
    burst: bool = False,
    loglevel: str = "WARNING",
    extra_env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> WorkerProcess:
    """Start ``taskworker -c N`` with the default pool (no ``-P``: whatever the
    default is, is what is measured)."""
    args = ["-c", str(concurrency), "-Q", ",".join(queues), "-l", loglevel, *extra_args]
    if burst:
        args.append("--burst")
    # DJTASKS_BENCH_WORKER_PREFIX runs the worker under another command, e.g.
    # "py-spy record -o w2.txt --format raw --subprocesses --" (--profile).
    prefix = os.environ.get("DJTASKS_BENCH_WORKER_PREFIX", "").split()
    return WorkerProcess(name, args, workdir / f"{name}.log", dict(extra_env or {}), prefix).start()


def child_pids(pid: int) -> list[int]:
    pids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            pids.extend(int(p) for p in text.split())
    except OSError:
        pass
    return pids


def proc_memory(pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {"pid": pid}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss_kib"] = int(line.split()[1])
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                out["uss_kib"] = out.get("uss_kib", 0) + int(line.split()[1])
    except OSError:
        return {}
    return out if "rss_kib" in out else {}


# -- rates and percentiles ----------------------------------------------------


def epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise BenchmarkError(f"not a datetime: {value!r}")


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


#: W2's warm-up: completions before this fraction of the tasks are not counted.
WARMUP_FRACTION = 0.10


def drain_rates(
    started: Sequence[float], done: Sequence[float], spawned_at: float
) -> dict[str, Any]:
    """Rates of a drain from the rows' timestamps.

    ``steady_tps`` (the headline): tasks completed after the first 10 % had
    completed, over the time from that completion to the last one. The first
    10 % cover the worker's start-up, the first claims, the children's first
    imports and a cold cache; the end of the drain is kept (emptying the
    queue is part of the job). ``done_at`` is taken in the process that ran
    the task when it finished, so batching of result writes cannot move it.
    """
    n = len(done)
    if n < 10:
        raise BenchmarkError(f"only {n} finished rows: too few to measure a rate")
    done_sorted = sorted(done)
    k = int(n * WARMUP_FRACTION)
    window = done_sorted[-1] - done_sorted[k]
    deciles = []
    for d in range(10):
        a = done_sorted[int(n * d / 10)]
        b = done_sorted[min(n - 1, int(n * (d + 1) / 10))]
        count = int(n * (d + 1) / 10) - int(n * d / 10)
        deciles.append(round(count / (b - a), 1) if b > a else None)
    return {
        "steady_tps": (n - 1 - k) / window if window > 0 else float("inf"),
        "active_tps": n / (done_sorted[-1] - min(started)) if started else None,
        "wall_tps": n / (done_sorted[-1] - spawned_at),
        "startup_s": min(started) - spawned_at if started else None,
        "drain_s": done_sorted[-1] - min(started) if started else None,
        "decile_tps": deciles,
    }


def row_times(ids: Sequence[str]) -> tuple[list[float], list[float]]:
    started: list[float] = []
    done: list[float] = []
    uuids = [uuid.UUID(i) for i in ids]
    for lo in range(0, len(uuids), 5000):
        part = TaskRecord.objects.filter(id__in=uuids[lo : lo + 5000])
        for s, d in part.values_list("started_at", "done_at"):
            if s is not None:
                started.append(epoch(s))
            if d is not None:
                done.append(epoch(d))
    return started, done


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.05,
    worker: WorkerProcess | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if worker is not None and not worker.alive():
            raise BenchmarkError(f"worker exited while waiting for {what}:\n{worker.output()}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def workdir(base: str | None) -> Path:
    return Path(tempfile.mkdtemp(prefix="djtasks-bench-", dir=base))
