"""Tasks the test suite runs, in workers and in process.

Tasks that take ``self`` record each run in :class:`~tests.testapp.models.Execution`
(task id, name, pid) before doing anything else, so a test can count runs,
see which process ran a task, and wait until a task is really executing.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from djtasks import task


class BoomError(Exception):
    """Raised by :func:`fail`; importable, so ``get()`` re-raises it as is."""


class FlakyError(Exception):
    """A transient error that :func:`flaky` is auto-retried for."""


def _record(task_: Any) -> None:
    from .models import Execution

    Execution.objects.create(task_id=task_.request.id, name=task_.name, pid=os.getpid())


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def echo(value: Any) -> Any:
    """Return its argument: round-trips values through the worker."""
    return value


@task(bind=True)
def record(self: Any, value: Any = None) -> Any:
    """A no-op that leaves one Execution row per run."""
    _record(self)
    return value


@task(bind=True)
def sleep(self: Any, seconds: float) -> float:
    _record(self)
    time.sleep(seconds)
    return seconds


@task(bind=True, acks_late=True)
def sleep_acks_late(self: Any, seconds: float) -> float:
    _record(self)
    time.sleep(seconds)
    return seconds


@task(bind=True, acks_late=True)
def hang_once(self: Any, seconds: float) -> int:
    """acks_late: hangs on its first run only; returns the attempt that finished."""
    _record(self)
    if self.request.attempt == 1:
        time.sleep(seconds)
    return self.request.attempt


@task(bind=True)
def fail(self: Any, message: str) -> None:
    _record(self)
    raise BoomError(message)


@task(bind=True, max_retries=5)
def retry_until(self: Any, times: int) -> int:
    """Retry (0.1 s apart) until it has been retried ``times`` times."""
    _record(self)
    if self.request.retries < times:
        raise self.retry(countdown=0.1)
    return self.request.retries


@task(bind=True, max_retries=2)
def retry_forever(self: Any) -> None:
    """Retries until ``max_retries`` runs out: ends in MaxRetriesExceededError."""
    _record(self)
    self.retry(countdown=0.05)


@task(bind=True, autoretry_for=(FlakyError,), retry_backoff=0.1, retry_jitter=False, max_retries=2)
def flaky(self: Any, failures: int) -> int:
    """Raises :class:`FlakyError` on its first ``failures`` runs (retried after 0.1 s, 0.2 s)."""
    _record(self)
    if self.request.retries < failures:
        raise FlakyError(f"run {self.request.retries} fails")
    return self.request.retries


@task
def nap(seconds: float) -> float:
    """Sleep without touching the database (pool tests run it without one)."""
    time.sleep(seconds)
    return seconds


@task
def unencodable() -> object:
    return object()


@task
def where() -> dict[str, Any]:
    """Which process and thread ran the task."""
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


@task(bind=True)
def progress(self: Any, steps: int) -> str:
    for i in range(steps):
        self.update_state(state="PROGRESS", meta={"done": i + 1, "total": steps})
    return "done"


@task(name="tests.renamed")
def renamed() -> str:
    return "renamed"


@task(queue="lowpri", priority=-5)
def routed() -> None:
    """Has its own queue and priority: the lowest rung of routing."""


@task
def lone_surrogate() -> str:
    """Returns a str that UTF-8 (so the database) cannot hold."""
    return "bad \ud800 text"


# Registers the canvas and worker-runtime test tasks in every worker.
from . import canvas_tasks, runtime_tasks  # noqa: E402, F401
