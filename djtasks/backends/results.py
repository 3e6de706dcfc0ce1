"""Task rows as ``django.tasks.TaskResult``: the status mapping and the run history.

Status mapping (djtasks state → ``TaskResultStatus``):

=========================== ============
``PENDING``                 ``READY``
``RECEIVED`` (claimed)      ``READY``
``RETRY`` (waits to re-run) ``READY``
``STARTED``                 ``RUNNING``
``SUCCESS``                 ``SUCCESSFUL``
``FAILURE``                 ``FAILED``
``REVOKED``                 ``FAILED`` (error ``djtasks.exceptions.TaskRevokedError``)
=========================== ============

The row keeps the latest run in its own columns (``started_at``, ``worker``,
``exc_type``, ``traceback``). What django.tasks wants beyond that (every
run's error and worker, the first start, the return value) is the *history*,
a JSON object the executing process stores in the row's ``result`` column
(through :mod:`djtasks.serialization`, so signed if ``DJTASKS_SIGN_MESSAGES``):
``{"return_value", "errors": [[class path, traceback], ...], "worker_ids",
"started_at", "final"}``. ``final`` is true when the run that wrote it ended
the task; otherwise the row's own columns add what happened since.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError

from .. import serialization, states
from ..exceptions import DecodeError

STATUS = {
    states.PENDING: TaskResultStatus.READY,
    states.RECEIVED: TaskResultStatus.READY,
    states.RETRY: TaskResultStatus.READY,
    states.STARTED: TaskResultStatus.RUNNING,
    states.SUCCESS: TaskResultStatus.SUCCESSFUL,
    states.FAILURE: TaskResultStatus.FAILED,
    states.REVOKED: TaskResultStatus.FAILED,
}

#: Arguments and histories are JSON, as django.tasks defines them; signing,
#: compression and DJTASKS_MAX_PAYLOAD_BYTES apply as to any djtasks row.
SERIALIZER = "json"


def encode_arguments(task_path: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str]:
    """``(content_type, payload)`` of a call; see :func:`djtasks.serialization.encode_arguments`."""
    return serialization.encode_arguments(task_path, args, kwargs, SERIALIZER)


def decode_arguments(
    content_type: str, payload: str, task_path: str | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """The ``[args, kwargs]`` of a row. With ``task_path`` (workers) the
    signature is verified, and required if ``DJTASKS_SIGN_MESSAGES`` is on.

    :raises djtasks.exceptions.DecodeError: it cannot be decoded, or must not be.
    """
    return serialization.decode_arguments(content_type, payload, task_path)


@dataclass
class History:
    """The runs of one task so far (see the module docstring)."""

    return_value: Any = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    worker_ids: list[str] = field(default_factory=list)
    started_at: dt.datetime | None = None
    final: bool = False

    def encode(self) -> tuple[str, str]:
        """``(content_type, text)`` for the row's ``result`` column."""
        return serialization.encode(
            {
                "return_value": self.return_value,
                "errors": [list(e) for e in self.errors],
                "worker_ids": self.worker_ids,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "final": self.final,
            },
            SERIALIZER,
        )

    @classmethod
    def decode(cls, content_type: str | None, text: str | None) -> History:
        """The history stored in a row; an empty one for anything else (a row
        that never ran, a ``result`` that is not a history or does not verify)."""
        if not text or not content_type:
            return cls()
        try:
            data = serialization.decode(content_type, text)
            errors = [(str(path), str(trace)) for path, trace in data.get("errors") or []]
            workers = [str(w) for w in data.get("worker_ids") or []]
            started = data.get("started_at")
            return cls(
                data.get("return_value"),
                errors,
                workers,
                dt.datetime.fromisoformat(started) if started else None,
                bool(data.get("final")),
            )
        except (DecodeError, ValueError, TypeError, AttributeError):
            return cls()


def error_text(exc_type: str, exc_message: str, traceback: str) -> str:
    """A ``TaskError.traceback`` for an error a row records: its traceback, or
    for errors that had none (lost worker, time limit, revoke) the last line
    a traceback would have had."""
    return traceback or f"{exc_type}: {exc_message}\n"


def bind(
    task: Task, *, priority: int, queue_name: str, backend: str, run_after: dt.datetime | None
) -> Task:
    """``task`` with the values a row stored, like ``task.using(...)`` but
    without validating again: a stored result is shown as it is, even if the
    backend's ``QUEUES`` changed since."""
    wanted = {
        "priority": priority,
        "queue_name": queue_name,
        "backend": backend,
        "run_after": run_after,
    }
    if all(getattr(task, k) == v for k, v in wanted.items()):
        return task
    bound = object.__new__(type(task))
    for f in dataclasses.fields(task):
        object.__setattr__(bound, f.name, wanted.get(f.name, getattr(task, f.name)))
    return bound


def task_result(
    *,
    task: Task,
    result_id: str,
    alias: str,
    state: str,
    args: list[Any],
    kwargs: dict[str, Any],
    enqueued_at: dt.datetime | None,
    started_at: dt.datetime | None,
    done_at: dt.datetime | None,
    worker: str,
    exc_type: str,
    exc_message: str,
    traceback: str,
    history: History,
) -> TaskResult:
    """Build the ``TaskResult`` of a row (its columns, plus its history)."""
    status = STATUS.get(state, TaskResultStatus.READY)
    errors = list(history.errors)
    worker_ids = list(history.worker_ids)
    if not history.final:
        # The run that ended the task (or runs now) did not write the history:
        # a lost worker, a time limit, a revoke; or it is still running.
        ran = started_at is not None and worker
        if state == states.STARTED or (state in (states.FAILURE, states.REVOKED) and ran):
            worker_ids.append(worker)
        if state in (states.FAILURE, states.REVOKED) and exc_type:
            errors.append((exc_type, error_text(exc_type, exc_message, traceback)))
    if status == TaskResultStatus.READY and started_at is not None and not worker_ids:
        started_at = None  # put back in the queue before it ran (a warm shutdown)
    result = TaskResult(
        task=task,
        id=result_id,
        status=status,
        enqueued_at=enqueued_at,
        started_at=history.started_at or started_at,
        last_attempted_at=started_at,
        finished_at=done_at
        if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
        else None,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=[TaskError(exception_class_path=p, traceback=t) for p, t in errors],
        worker_ids=worker_ids,
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", history.return_value)
    return result
