"""A fleet of real ``taskworker`` processes under fire, and what it did.

The harness of scenarios 3 and 4 (``tests/chaos/test_fleet.py``) and of the
long soak (``benchmarks/soak.py``): enqueue ``tasks`` calls of
``chaos.effect`` (at most once) and ``chaos.effect_late`` (``acks_late``),
run them on ``workers`` workers, optionally SIGKILL a worker or a prefork
child every few seconds, cut every worker's database sessions, or restart
PostgreSQL once, then wait until every row is final and count.

The verdict comes from the database alone: task rows (state, attempt,
exception type) and the side table ``Effect`` (UNIQUE task id) that each task
writes. :meth:`Report.violations` lists every broken promise:

- *lost*: a row that is not final once the run has drained;
- a plain task whose effect was refused by the UNIQUE key (it ran twice);
- a SUCCESS without its effect, or an effect counted more often than the
  task's runs can explain;
- a FAILURE for any reason but the one the faults allow (``WorkerLostError``
  for a task killed while started; with connection faults, the task's own
  database error).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DatabaseError, InterfaceError, connection, connections

from djtasks import states
from djtasks.models import TaskRecord
from tests.chaos.app import tasks as chaos_tasks
from tests.chaos.app.models import Effect
from tests.support import ManagedProcess

WORKER_LOST = "djtasks.exceptions.WorkerLostError"
QUEUE = "chaos"
PLAIN, LATE = chaos_tasks.effect.name, chaos_tasks.effect_late.name
#: Exception types a task's own query raises when its session is cut.
DB_ERRORS = (
    "django.db.utils.OperationalError",
    "django.db.utils.InterfaceError",
    "psycopg.OperationalError",
    "django.db.utils.DatabaseError",
)

#: ``spawn(args, label, env)``: start ``manage.py *args`` (a ManagedProcess).
Spawn = Callable[[list[str], str, dict[str, str]], ManagedProcess]


@dataclass
class Faults:
    """What goes wrong during a run."""

    #: Seconds between two SIGKILLs, drawn uniformly from this range; None: no kills.
    kill_every: tuple[float, float] | None = None
    #: Also kill when this share of the tasks is done (so a fast run gets its kills).
    kill_at: tuple[float, ...] = ()
    #: Share of the kills aimed at one prefork child instead of a whole worker.
    child_share: float = 0.25
    #: Restart the PostgreSQL server once, when a third of the tasks are done.
    restart_postgres: bool = False
    #: Seconds between two rounds of ``pg_terminate_backend()`` on every worker session.
    terminate_every: float | None = None

    @property
    def any(self) -> bool:
        return bool(
            self.kill_every or self.kill_at or self.restart_postgres or self.terminate_every
        )


@dataclass
class Plan:
    """The size and shape of a run."""

    workers: int = 4
    concurrency: int = 2
    pool: str = "prefork"
    tasks: int = 2000
    #: Share of the tasks that are ``acks_late``.
    late_share: float = 0.5
    #: Seconds each task sleeps around its effect write (so kills land mid-run).
    work: float = 0.002
    #: The workers' lease (DJTASKS_VISIBILITY_TIMEOUT): how soon a dead worker's rows return.
    lease: float = 2.0
    faults: Faults = field(default_factory=Faults)
    #: Give up (and report the unfinished rows as lost) after this many seconds.
    timeout: float = 300.0
    seed: int = 0
    #: Seconds between two looks at the progress (and the kill schedule).
    poll: float = 0.2
    #: Extra command-line options for every worker.
    worker_args: tuple[str, ...] = ()


@dataclass
class Report:
    """What a run did, from the database's point of view."""

    database: str
    plan: Plan
    enqueued: int = 0
    duration: float = 0.0
    worker_kills: int = 0
    child_kills: int = 0
    restarts: int = 0
    #: Of those, restarts nobody in this run asked for (another user of a shared server).
    external_restarts: int = 0
    terminations: int = 0  # database sessions cut
    workers_started: int = 0
    states: Counter[str] = field(default_factory=Counter)
    #: (task name, exc_type) of every FAILURE.
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Rows not final when the run ended: the promise is zero.
    lost: int = 0
    #: Rows claimed more than once (rescued after a kill, released...).
    redelivered: int = 0
    #: Runs of acks_late tasks beyond the first that wrote their effect again.
    late_reruns: int = 0
    #: Plain tasks whose effect the UNIQUE key refused: a second run. The promise is zero.
    plain_duplicates: int = 0
    #: SUCCESS rows with no effect row: the promise is zero.
    success_without_effect: int = 0
    #: Plain tasks that wrote their effect but ended WorkerLostError (killed
    #: between the effect and the outcome: committed effect, lost outcome).
    effect_then_lost: int = 0
    exit_codes: list[int | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.plain_duplicates + self.late_reruns

    def violations(self) -> list[str]:
        """Every broken promise, in words; empty when the run kept them all."""
        bad = []
        if self.lost:
            bad.append(f"{self.lost} task(s) not final (lost or stuck)")
        if self.plain_duplicates:
            bad.append(f"{self.plain_duplicates} plain task(s) ran twice")
        if self.success_without_effect:
            bad.append(f"{self.success_without_effect} SUCCESS row(s) without their effect")
        if self.states.get(states.SUCCESS, 0) + sum(self.failures.values()) + self.lost != (
            self.enqueued
        ):
            bad.append(f"states {dict(self.states)} do not add up to {self.enqueued} tasks")
        faulted = self.plan.faults.any or self.restarts
        allowed = {WORKER_LOST} if faulted else set()
        if self.restarts or self.plan.faults.terminate_every:
            allowed |= set(DB_ERRORS)
        for (name, exc_type), n in self.failures.items():
            if exc_type not in allowed:
                bad.append(f"{n} {name} FAILURE(s) with {exc_type}")
        if not faulted:
            if self.redelivered or self.late_reruns:
                bad.append(
                    f"no faults, yet {self.redelivered} redelivered and "
                    f"{self.late_reruns} re-run(s)"
                )
            if self.states.get(states.SUCCESS, 0) != self.enqueued:
                bad.append(f"no faults, yet not every task succeeded: {dict(self.states)}")
        if any(code != 0 for code in self.exit_codes):
            bad.append(f"a worker's warm shutdown exited with {self.exit_codes}")
        return bad

    def line(self) -> str:
        """One line of figures, as quoted in docs/guarantees.md."""
        p = self.plan
        failed = sum(self.failures.values())
        worker_lost = sum(n for (_, t), n in self.failures.items() if t == WORKER_LOST)
        return (
            f"{self.database}: {p.workers} workers x c{p.concurrency} {p.pool}, "
            f"{self.enqueued} tasks ({p.late_share:.0%} acks_late) in {self.duration:.1f}s; "
            f"kills {self.worker_kills} workers + {self.child_kills} children, "
            f"postgres restarts {self.restarts} ({self.external_restarts} by others), "
            f"sessions cut {self.terminations}; "
            f"SUCCESS {self.states.get(states.SUCCESS, 0)}, FAILURE {failed} "
            f"(WorkerLostError {worker_lost}), redelivered {self.redelivered}, "
            f"acks_late re-runs {self.late_reruns}, plain duplicates {self.plain_duplicates}, "
            f"effect-then-lost {self.effect_then_lost}, lost {self.lost}"
        )


class Fleet:
    """Runs a :class:`Plan`; ``spawn`` starts the worker processes (and owns reaping)."""

    def __init__(self, plan: Plan, spawn: Spawn) -> None:
        self.plan = plan
        self.spawn = spawn
        self.rng = random.Random(plan.seed)
        self.workers: dict[int, ManagedProcess] = {}
        self.generation = 0
        vendor = connection.vendor
        self.report = Report("postgresql" if vendor == "postgresql" else vendor, plan)
        self._ids: list[str] = []

    # -- the run ---------------------------------------------------------------------

    def run(self) -> Report:
        plan, report = self.plan, self.report
        started = time.monotonic()
        self.enqueue()
        for slot in range(plan.workers):
            self.start_worker(slot)
        kill_at = self._next_kill(started)
        terminate_at = (
            started + plan.faults.terminate_every if plan.faults.terminate_every else None
        )
        restarted = not plan.faults.restart_postgres
        self._server_started = _retrying(self.server_started)
        milestones = sorted(plan.faults.kill_at)
        deadline = started + plan.timeout
        while True:
            now = time.monotonic()
            unfinished = _retrying(self.unfinished)
            started_at = _retrying(self.server_started)
            if started_at != self._server_started:  # not by us: another user of the server
                self._server_started = started_at
                report.restarts += 1
                report.external_restarts += 1
                report.notes.append(f"the database server was restarted at {started_at}")
            if unfinished == 0 or now >= deadline:
                break
            self._respawn_dead()
            if kill_at is not None and now >= kill_at:
                _retrying(self.kill_one)
                kill_at = self._next_kill(now)
            done = 1 - unfinished / max(1, report.enqueued)
            while milestones and done >= milestones[0]:
                milestones.pop(0)
                _retrying(self.kill_one)
            if terminate_at is not None and now >= terminate_at:
                report.terminations += _retrying(self.cut_sessions)
                terminate_at = now + (plan.faults.terminate_every or 0)
            if not restarted and unfinished <= report.enqueued * 2 / 3:
                restart_postgres()
                restarted = True
                report.restarts += 1
                self._server_started = _retrying(self.server_started)
            time.sleep(plan.poll)
        report.duration = time.monotonic() - started
        self.stop()
        _retrying(self.count)
        return report

    def enqueue(self) -> None:
        """Every call up front, plain and acks_late interleaved in blocks of 250."""
        plan = self.plan
        late = round(plan.tasks * plan.late_share)
        kinds = [LATE] * late + [PLAIN] * (plan.tasks - late)
        self.rng.shuffle(kinds)
        i = 0
        while i < len(kinds):
            block = kinds[i : i + 250]
            name = block[0]
            n = next((k for k, kind in enumerate(block) if kind != name), len(block))
            task = chaos_tasks.effect_late if name == LATE else chaos_tasks.effect
            results = task.bulk_delay([(i + k, plan.work) for k in range(n)], queue=QUEUE)
            self._ids.extend(r.id for r in results)
            i += n
        self.report.enqueued = len(self._ids)

    def start_worker(self, slot: int) -> ManagedProcess:
        plan = self.plan
        self.generation += 1
        name = f"fleet{slot}-{self.generation}@chaos"
        args = [
            "taskworker",
            "-c",
            str(plan.concurrency),
            "-P",
            plan.pool,
            "-Q",
            QUEUE,
            "--hostname",
            name,
            "--loglevel",
            "WARNING",
            *plan.worker_args,
        ]
        env = {"DJTASKS_TEST_VISIBILITY_TIMEOUT": str(plan.lease)}
        proc = self.spawn(args, name, env)
        # Killed workers may print nothing; a traceback from djtasks still fails the test.
        self.workers[slot] = proc
        self.report.workers_started += 1
        return proc

    def kill_one(self) -> None:
        """SIGKILL a random worker (with its children), or one of its prefork children."""
        serving = self._serving()
        if not serving:
            return  # every worker is still starting: kill a serving one next time
        slot = self.rng.choice(serving)
        proc = self.workers[slot]
        kids = children(proc.pid) if self.plan.pool == "prefork" else []
        if kids and self.rng.random() < self.plan.faults.child_share:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.rng.choice(kids), signal.SIGKILL)
                self.report.child_kills += 1
            return
        proc.crash()
        self.report.worker_kills += 1
        self.start_worker(slot)

    def server_started(self) -> Any:
        """PostgreSQL: when the server started (a change means it restarted)."""
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_postmaster_start_time()")
            return cursor.fetchone()[0]

    def cut_sessions(self) -> int:
        """``pg_terminate_backend()`` on every other session of this database."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
            return int(cursor.fetchone()[0])

    def stop(self) -> None:
        """A warm shutdown of every live worker; each must exit 0."""
        # A worker still starting up has no signal handlers yet: let it serve first.
        deadline = time.monotonic() + 60
        while len(_retrying(self._serving)) < len(self.workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        live = [p for p in self.workers.values() if p.alive()]
        for proc in live:
            proc.terminate()
        for proc in live:
            try:
                self.report.exit_codes.append(proc.wait(60))
            except AssertionError as exc:
                self.report.notes.append(str(exc)[:500])
                self.report.exit_codes.append(None)

    def _serving(self) -> list[int]:
        """Slots whose worker is alive and has entered its loop (its Worker row exists)."""
        from djtasks.models import Worker

        names = set(
            Worker.objects.filter(pk__in=[p.label for p in self.workers.values()]).values_list(
                "pk", flat=True
            )
        )
        return [slot for slot, p in sorted(self.workers.items()) if p.alive() and p.label in names]

    def _respawn_dead(self) -> None:
        # A worker that died by itself (not by our kill) is a finding: note it.
        for slot, proc in list(self.workers.items()):
            if not proc.alive():
                self.report.notes.append(f"{proc.label} exited by itself ({proc.returncode})")
                self.start_worker(slot)

    def _next_kill(self, now: float) -> float | None:
        every = self.plan.faults.kill_every
        return now + self.rng.uniform(*every) if every else None

    # -- counting --------------------------------------------------------------------

    def unfinished(self) -> int:
        return TaskRecord.objects.filter(queue=QUEUE).exclude(state__in=states.READY_STATES).count()

    def count(self) -> None:
        report = self.report
        rows = TaskRecord.objects.filter(queue=QUEUE).values_list(
            "id", "name", "state", "attempt", "exc_type"
        )
        effects = dict(Effect.objects.values_list("task_id", "runs"))
        report.states = Counter()
        report.failures = Counter()
        report.lost = report.redelivered = report.late_reruns = 0
        report.plain_duplicates = report.success_without_effect = report.effect_then_lost = 0
        for task_id, name, state, attempt, exc_type in rows.iterator(chunk_size=5000):
            key = str(task_id)
            report.states[state] += 1
            runs = effects.get(key, 0)
            if state not in states.READY_STATES:
                report.lost += 1
            if attempt > 1:
                report.redelivered += 1
            if state == states.FAILURE:
                report.failures[(name, exc_type)] += 1
                if name == PLAIN and exc_type == "django.db.utils.IntegrityError":
                    report.plain_duplicates += 1
                if name == PLAIN and exc_type == WORKER_LOST and runs:
                    report.effect_then_lost += 1
            if state == states.SUCCESS and not runs:
                report.success_without_effect += 1
            if name == LATE and runs > 1:
                report.late_reruns += runs - 1


# -- helpers ----------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


#: A shell command that restarts the server the suite uses, when it is a
#: private one (see docs/guarantees.md); without it, the machine's cluster.
RESTART_COMMAND = "DJTASKS_CHAOS_PG_RESTART"


def restart_postgres() -> None:
    """Restart the PostgreSQL server (CI only, or a private server: it cuts every session)."""
    command = os.environ.get(RESTART_COMMAND)
    if command:
        subprocess.run(command, shell=True, check=True, timeout=120)  # noqa: S602 - ours
    else:
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
            timeout=120,
        )
    connections.close_all()


def _retrying(fn: Callable[[], Any], attempts: int = 60) -> Any:
    """Call ``fn``, reconnecting while the database is away (restart, cut sessions)."""
    for i in range(attempts):
        try:
            return fn()
        except (DatabaseError, InterfaceError):
            if i == attempts - 1:
                raise
            connections.close_all()
            time.sleep(0.5)
    return None


def spawn_in(directory: Path, started: list[ManagedProcess]) -> Spawn:
    """A ``spawn`` for use outside pytest: logs in ``directory``, processes in ``started``."""

    def spawn(args: list[str], label: str, env: dict[str, str]) -> ManagedProcess:
        proc = ManagedProcess(args, directory / f"{label}.log", label, env)
        started.append(proc)
        return proc

    return spawn
