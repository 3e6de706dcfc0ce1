"""Tasks of the canvas tests (``tests/*/test_canvas*.py``) and of ``docs/canvas.md``.

The names follow Celery's canvas guide (``add`` lives in :mod:`.tasks`;
``mul``, ``xsum``, ``tsum`` here) so the documentation's examples run as
written. Tasks that take ``self`` record each run in
:class:`~tests.testapp.models.Execution`, which is how the tests count
executions of a chord's body.
"""

from __future__ import annotations

import os
import time
from typing import Any

from djtasks import AsyncResult, task

from .tasks import BoomError


def _record(task_: Any) -> None:
    from .models import Execution

    Execution.objects.create(task_id=task_.request.id, name=task_.name, pid=os.getpid())


@task
def mul(x: int, y: int) -> int:
    return x * y


@task
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


#: Celery's guide uses both names for the same thing.
tsum = xsum


@task
def concat(items: list[Any], extra: Any = None) -> list[Any]:
    """Flatten one level (a chord's list of lists), then add ``extra`` if given."""
    out: list[Any] = []
    for item in items:
        out.extend(item if isinstance(item, list) else [item])
    return out if extra is None else [*out, extra]


@task(bind=True)
def collect(self: Any, results: list[Any]) -> list[Any]:
    """A chord body that records each run: the proof of "exactly once"."""
    _record(self)
    return results


@task(bind=True)
def square(self: Any, i: int) -> int:
    _record(self)
    return i * i


@task(bind=True, acks_late=True)
def slow_square(self: Any, i: int, seconds: float) -> int:
    """acks_late: re-run elsewhere if its worker dies while it runs."""
    _record(self)
    time.sleep(seconds)
    return i * i


@task
def explode(*args: Any) -> None:
    """Fails with :class:`~tests.testapp.tasks.BoomError`, whatever it is given."""
    raise BoomError(f"explode{tuple(args)!r}")


@task
def error_handler(task_id: str) -> str:
    """An error callback: gets the failed task's id; returns its exception as text."""
    exc = AsyncResult(task_id).get(propagate=False)
    return f"{task_id} raised {exc!r}"


@task(bind=True)
def whoami(self: Any, *args: Any) -> dict[str, Any]:
    """Its own place in a workflow, from the worker's request."""
    r = self.request
    return {
        "id": r.id,
        "parent_id": r.parent_id,
        "root_id": r.root_id,
        "group_id": r.group_id,
        "args": list(args),
    }


@task
def log_error(request: Any, exc: BaseException, traceback: str) -> None:
    """A Celery-style error callback: called in the worker process with the
    failed task's request, exception and traceback. Leaves an Execution row
    named after what it was given."""
    from .models import Execution

    seen = f"log_error {request.task} {type(exc).__name__}: {exc} tb={'Traceback' in traceback}"
    Execution.objects.create(task_id=request.id, name=seen[:255], pid=os.getpid())


# -- The tasks of docs/canvas.md, under the names the page shows ------------------------
# The page defines them in a module ``proj.tasks``; tests/integration/
# test_canvas_docs.py runs the page's own definitions in the test process, and
# these copies (same code, same names) are what worker processes run.

_DOCS = "proj.tasks"


@task(name=f"{_DOCS}.add")
def docs_add(x: int, y: int) -> int:
    return x + y


@task(name=f"{_DOCS}.mul")
def docs_mul(x: int, y: int) -> int:
    return x * y


@task(name=f"{_DOCS}.xsum")
def docs_xsum(numbers: list[int]) -> int:
    return sum(numbers)


@task(name=f"{_DOCS}.raising_task")
def docs_raising_task(*args: Any) -> None:
    raise ValueError("something went wrong")


@task(name=f"{_DOCS}.error_handler")
def docs_error_handler(task_id: str) -> str:
    exc = AsyncResult(task_id).get(propagate=False)
    return f"task {task_id} raised {exc!r}"


@task(name=f"{_DOCS}.log_error")
def docs_log_error(request: Any, exc: BaseException, traceback: str) -> None:
    import logging

    logging.getLogger("proj.tasks").error("task %s raised %r", request.id, exc)
