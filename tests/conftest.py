"""Fixtures shared by the whole suite (unit, integration, acceptance, beat, admin, browser).

Databases
    The suite runs on whatever ``DATABASE_URL`` says (SQLite when unset); tox
    runs it once per database. ``@pytest.mark.postgres`` skips a test on SQLite.
    Tests that start subprocesses need committed rows:
    ``@pytest.mark.django_db(transaction=True)`` (the process fixtures below
    ask for ``transactional_db`` themselves, so they also work without it).

Processes
    ``manage_py(args, ...)`` starts ``python manage.py <args>`` against the
    test database and returns a :class:`tests.support.ManagedProcess`;
    ``worker(...)`` starts a ``taskworker`` and waits until it is serving.
    Whatever they start is reaped when the test ends (SIGTERM, then SIGKILL
    to the whole process group), and the output of every process the test
    started is attached to its failure report. A process whose output holds
    a Python traceback fails the test at teardown unless the test sets
    ``proc.expect_tracebacks = True``. ``proc.terminate()`` sends SIGTERM,
    ``proc.crash()`` SIGKILLs it with its children, ``proc.wait()`` returns
    the exit code, ``proc.log()`` / ``proc.wait_for_output(text)`` read its
    output. Example::

        def test_beat_enqueues(manage_py, worker):
            w = worker(concurrency=1, pool="solo")
            beat = manage_py(["taskbeat"], label="beat")
            beat.wait_for_output("beat: Starting")

Waiting
    ``from tests.support import wait_until`` (poll a condition with a
    deadline) and ``in_other_connection`` (run ORM code on a second
    connection).

Tasks
    ``tests/testapp/tasks.py`` holds the tasks workers run; the ones that
    record runs (``record``, ``sleep``, ``fail``, the retrying ones...) write
    an ``Execution`` row per run, so a test can count runs and find the pid
    that ran one (``tests/acceptance/helpers.py`` waits on them).
    ``temp_task(fn, **opts)`` registers a throw-away task for one test (in
    this process only: a worker subprocess does not know it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import hypothesis
import pytest
from django.conf import settings

from tests.support import ManagedProcess, wait_until

# Keep Hypothesis from writing an example database into the working tree.
hypothesis.settings.register_profile("djtasks", database=None, deadline=None)
hypothesis.settings.load_profile("djtasks")

_PROCESSES = pytest.StashKey[list[ManagedProcess]]()
_counter = itertools.count(1)


def on_postgres() -> bool:
    """Whether the suite runs on PostgreSQL (decided by settings; no query)."""
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


#: Fixtures that start manage.py subprocesses (workers, beat, the demo).
_PROCESS_FIXTURES = {"manage_py", "worker"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # ``-m "not processes"`` leaves out every test that starts processes
        # (tox's Django 6 environments do: those tests exercise djtasks'
        # own worker, not Django, and run in the Django 5.2 environments).
        if _PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.processes)
    if on_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://...)")
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(skip)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Django deletes the SQLite test database file but not its WAL companions.
    db = settings.DATABASES["default"]
    name = str(db.get("TEST", {}).get("NAME") or "")
    if db["ENGINE"].endswith("sqlite3") and name and not os.path.exists(name):
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name + suffix)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for proc in item.stash.get(_PROCESSES, []):
            report.sections.append(
                (
                    f"output of {proc.label} (pid {proc.pid}, exit code {proc.returncode})",
                    proc.log(),
                )
            )
    return report


# -- processes -----------------------------------------------------------------


@pytest.fixture
def manage_py(
    request: pytest.FixtureRequest, tmp_path: Any, transactional_db: None
) -> Iterator[Callable[..., ManagedProcess]]:
    """Factory: ``manage_py(args, label=None, ready=None, timeout=30, env=None, cls=ManagedProcess)``.

    Starts ``python manage.py *args`` on the test database. ``ready`` is an
    optional callable; when given, the factory returns only once it is
    truthy, and fails with the process output if the process exits first or
    ``timeout`` passes. Every process is reaped at teardown.
    """
    started: list[ManagedProcess] = []
    request.node.stash[_PROCESSES] = started

    def start(
        args: Sequence[str],
        label: str | None = None,
        ready: Callable[[], Any] | None = None,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        cls: type[ManagedProcess] = ManagedProcess,
    ) -> ManagedProcess:
        label = label or f"{args[0]}-{next(_counter)}"
        proc = cls(args, tmp_path / f"{label}.log", label, env)
        started.append(proc)
        if ready is not None:

            def up() -> Any:
                if not proc.alive():
                    raise AssertionError(
                        f"{label} exited with code {proc.returncode} "
                        f"before it was ready; its output:\n{proc.log()}"
                    )
                return ready()

            wait_until(up, timeout, interval=0.05, message=f"{label} to be ready")
        return proc

    yield start
    errors = []
    for proc in reversed(started):
        try:
            proc.reap()
        except Exception as exc:
            errors.append(f"could not reap {proc.label}: {exc!r}")
    for proc in started:
        # A worker survives every task failure: a traceback in its output means
        # djtasks itself crashed, even if the test's own checks passed.
        if not proc.expect_tracebacks and "Traceback (most recent call last)" in proc.log():
            errors.append(f"{proc.label} wrote a traceback:\n{proc.log()}")
    if errors:
        pytest.fail("\n".join(errors))


class WorkerProcess(ManagedProcess):
    """A ``taskworker`` subprocess; ``name`` is its ``--hostname`` and Worker row key."""

    @property
    def name(self) -> str:
        return self.label

    def row(self) -> Any:
        from djtasks.models import Worker

        return Worker.objects.filter(pk=self.name).first()


@pytest.fixture
def worker(manage_py: Callable[..., ManagedProcess]) -> Callable[..., WorkerProcess]:
    """Factory: start a real ``manage.py taskworker`` and wait until it serves.

    ``worker(concurrency=2, pool="prefork", queues=("default",), name=None,
    args=(), ready=True, timeout=30, env=None)``; ``args`` are extra
    command-line options, ``env`` extra environment variables (for example
    ``{"DJTASKS_TEST_VISIBILITY_TIMEOUT": "2"}`` for short leases, see
    ``tests/settings.py``). Ready means its Worker row exists: it has forked its pool and
    entered the loop. Reaped at teardown like every ``manage_py`` process.
    """
    from djtasks.models import Worker

    def start(
        concurrency: int = 2,
        pool: str = "prefork",
        queues: Sequence[str] = ("default",),
        name: str | None = None,
        args: Sequence[str] = (),
        ready: bool = True,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        name = name or f"w{next(_counter)}-{uuid.uuid4().hex[:6]}@test"
        argv = [
            "taskworker",
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-Q",
            ",".join(queues),
            "--hostname",
            name,
            "--loglevel",
            "INFO",
            *args,
        ]
        return manage_py(
            argv,
            label=name,
            cls=WorkerProcess,
            timeout=timeout,
            env=env,
            ready=(lambda: Worker.objects.filter(pk=name).exists()) if ready else None,
        )

    return start


# -- tasks ---------------------------------------------------------------------


@pytest.fixture
def temp_task() -> Iterator[Callable[..., Any]]:
    """Factory: ``temp_task(fn, **options)`` registers ``fn`` as a task for this test only.

    The name defaults to a unique one; the task is unregistered at teardown.
    """
    from djtasks import task
    from djtasks.registry import tasks as registry

    names: list[str] = []

    def make(fn: Callable[..., Any], **options: Any) -> Any:
        options.setdefault("name", f"tests.temp.{fn.__name__}.{uuid.uuid4().hex[:8]}")
        new = task(**options)(fn)
        names.append(new.name)
        return new

    yield make
    for name in names:
        registry.unregister(name)
