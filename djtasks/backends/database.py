"""``DatabaseBackend``: django.tasks calls become djtasks task rows.

``task.enqueue()`` inserts a row through :func:`djtasks.queue.enqueue` (so,
like ``delay()``, inside the caller's transaction); ``manage.py taskworker``
claims and runs it (:mod:`djtasks.backends.execution`); ``get_result()``
reads the row back as a ``TaskResult`` (:mod:`djtasks.backends.results`).
"""

from __future__ import annotations

try:
    from django.tasks import TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
except ImportError as exc:  # Django < 6.0
    import django

    raise ImportError(
        "djtasks.backends.DatabaseBackend is a backend for django.tasks, which Django "
        f"added in 6.0; this is Django {django.get_version()}. Upgrade Django, or call "
        "djtasks' own tasks (@djtasks.task, .delay()), which need no TASKS setting."
    ) from exc

import datetime as dt
import hashlib
import json
import uuid
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.tasks import Task
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from ..exceptions import DecodeError
from ..ids import uuid7
from . import HEADER, options
from .loading import TaskNotLoadable, check_loadable, load_task
from .results import History, bind, decode_arguments, encode_arguments, task_result

# The models (and queue.py, which imports them) are imported in the methods:
# Django loads this module when a tasks.py first uses @task, which may be
# before the app registry is ready.

#: The longest queue name and task path the task table holds (its columns).
_MAX_QUEUE = 100
_MAX_NAME = 255

_ROW_FIELDS = (
    "id",
    "name",
    "queue",
    "priority",
    "state",
    "content_type",
    "payload",
    "headers",
    "eta",
    "created_at",
    "started_at",
    "done_at",
    "worker",
    "result",
    "result_content_type",
    "exc_type",
    "exc_message",
    "traceback",
)


class DatabaseBackend(BaseTaskBackend):
    """Runs django.tasks tasks on djtasks workers, from the djtasks table.

    ``TASKS = {"default": {"BACKEND": "djtasks.backends.DatabaseBackend",
    "QUEUES": [...], "OPTIONS": {...}}}``; see :mod:`djtasks.backends.options`
    for ``OPTIONS``.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.parsed_options, self.option_errors = options.parse(
            self.options, frozenset(self.queues)
        )

    # -- validation ---------------------------------------------------------------

    def validate_task(self, task: Task) -> None:
        """Django's checks, plus what the djtasks table and workers need: a
        queue name that fits, and a task the workers will agree to load."""
        super().validate_task(task)
        if not task.queue_name or len(task.queue_name) > _MAX_QUEUE:
            raise InvalidTask(
                f"queue_name must be 1 to {_MAX_QUEUE} characters, not {task.queue_name!r}"
            )
        if len(task.module_path) > _MAX_NAME:
            raise InvalidTask(
                f"the task path {task.module_path!r} is longer than {_MAX_NAME} characters"
            )
        reason = check_loadable(task.module_path)
        if reason:
            raise InvalidTask(f"djtasks workers would not run this task: {reason}")

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """System checks: the OPTIONS, the QUEUES, and djtasks being installed."""
        messages: list[checks.CheckMessage] = [
            checks.Error(f"TASKS[{self.alias!r}]['OPTIONS']: {problem}", id="djtasks.backends.E001")
            for problem in self.option_errors
        ]
        messages.extend(
            checks.Error(
                f"TASKS[{self.alias!r}]['QUEUES']: {q!r} must be a string of 1 to "
                f"{_MAX_QUEUE} characters",
                id="djtasks.backends.E002",
            )
            for q in sorted(self.queues, key=str)
            if not isinstance(q, str) or not q or len(q) > _MAX_QUEUE
        )
        if "djtasks" not in django_settings.INSTALLED_APPS and not any(
            str(app).startswith("djtasks.") for app in django_settings.INSTALLED_APPS
        ):
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] uses djtasks.backends.DatabaseBackend, which needs "
                    "'djtasks' in INSTALLED_APPS (its table holds the tasks)",
                    id="djtasks.backends.E003",
                )
            )
        return messages

    def _raise_if_misconfigured(self) -> None:
        if self.option_errors:
            raise ImproperlyConfigured(
                f"TASKS[{self.alias!r}]['OPTIONS'] is invalid: " + "; ".join(self.option_errors)
            )

    # -- enqueue ----------------------------------------------------------------------

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Insert the call as a task row and return its (READY) ``TaskResult``.

        Inside ``transaction.atomic()`` the row, like any djtasks enqueue,
        reaches the workers only when the transaction commits, and a rollback
        leaves nothing behind. ``task_enqueued`` is sent once the row is written.
        With the ``unique`` option, a call whose task and arguments match an
        unfinished task returns that task's result instead.

        :raises InvalidTask: the task cannot run on this backend (queue, priority,
            run_after, a module the workers would not load).
        :raises TypeError, ValueError: an argument is not JSON-serializable.
        """
        from .. import queue

        self.validate_task(task)
        self._raise_if_misconfigured()
        now = timezone.now()
        task_id = uuid7()
        result = TaskResult(
            task=task,
            id=str(task_id),
            status=TaskResultStatus.READY,
            enqueued_at=now,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )  # normalises args and kwargs, raising TypeError for what JSON cannot hold
        opts = self.parsed_options.for_queue(task.queue_name)
        headers: dict[str, Any] = {
            HEADER: {
                "backend": self.alias,
                "enqueued_at": now.isoformat(),
                "run_after": task.run_after is not None,
            }
        }
        if opts.time_limit is not None or opts.soft_time_limit is not None:
            # The pool enforces these (the worker reads the "timelimit" header).
            # An async task's soft limit is a timeout inside its event loop
            # instead (execution.py), which cancels the coroutine cleanly.
            soft = None if iscoroutinefunction(task.func) else opts.soft_time_limit
            headers["timelimit"] = [soft, opts.time_limit]
        content_type, payload = encode_arguments(task.module_path, result.args, result.kwargs)
        unique_key = unique_until = None
        if opts.unique:
            # The key: the task and its arguments (and the backend, whose
            # get_result() must find the task a duplicate call returns).
            digest = hashlib.sha256(
                f"{self.alias}\0{task.module_path}\0{_canonical(result.args, result.kwargs)}".encode()
            ).hexdigest()[:32]
            unique_key = f"{task.module_path[: _MAX_NAME - 33]}:{digest}"
            if opts.unique_for is not None:
                unique_until = now + dt.timedelta(seconds=opts.unique_for)
        existing = queue.enqueue(
            [
                queue.Message(
                    id=task_id,
                    name=task.module_path,
                    queue=task.queue_name,
                    priority=task.priority,
                    content_type=content_type,
                    payload=payload,
                    eta=task.run_after or now,
                    created_at=now,
                    headers=headers,
                    acks_late=opts.acks_late,
                    unique_key=unique_key,
                    unique_until=unique_until,
                )
            ]
        )
        if existing:
            # A unique task already waiting or running: its result, and no
            # task_enqueued, since nothing was enqueued.
            return self.get_result(existing[0])
        task_enqueued.send(type(self), task_result=result)
        return result

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """:meth:`enqueue` from async code (the insert runs in Django's sync thread)."""
        return await sync_to_async(self.enqueue, thread_sensitive=True)(task, args, kwargs)

    # -- results ----------------------------------------------------------------------

    def get_result(self, result_id: Any) -> TaskResult:
        """Read a task's ``TaskResult`` from its row, from any process.

        :raises TaskResultDoesNotExist: no django.tasks task of this backend
            has this id (an unknown id, a djtasks task, another backend's task,
            or a row already deleted by ``DJTASKS_RESULT_EXPIRES``).
        :raises InvalidTask: the row names a task this process cannot load.
        """
        from .. import queue
        from ..models import TaskRecord

        try:
            pk = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        row = TaskRecord.objects.using(queue.db_alias()).filter(pk=pk).values(*_ROW_FIELDS).first()
        marker = row["headers"].get(HEADER) if row and isinstance(row["headers"], dict) else None
        if not isinstance(marker, dict) or marker.get("backend") != self.alias:
            raise TaskResultDoesNotExist(result_id)
        try:
            task = load_task(row["name"])
        except TaskNotLoadable as exc:
            raise InvalidTask(f"task result {result_id}: {exc}") from exc
        try:
            # Shown, not run: decoded like the admin shows a payload (a
            # signature is checked by the worker, which needs it).
            args, kwargs = decode_arguments(row["content_type"], row["payload"])
        except DecodeError as exc:
            raise InvalidTask(f"task result {result_id}: {exc}") from exc
        enqueued_at = row["created_at"]
        task = bind(
            task,
            priority=row["priority"],
            queue_name=row["queue"],
            backend=self.alias,
            run_after=row["eta"] if marker.get("run_after") else None,
        )
        try:
            return task_result(
                task=task,
                result_id=str(row["id"]),
                alias=self.alias,
                state=row["state"],
                args=args,
                kwargs=kwargs,
                enqueued_at=enqueued_at,
                started_at=row["started_at"],
                done_at=row["done_at"],
                worker=row["worker"],
                exc_type=row["exc_type"],
                exc_message=row["exc_message"],
                traceback=row["traceback"],
                history=History.decode(row["result_content_type"], row["result"]),
            )
        except (TypeError, ValueError) as exc:  # a forged payload, see execution.py
            raise InvalidTask(f"task result {result_id}: payload: {exc}") from exc

    async def aget_result(self, result_id: Any) -> TaskResult:
        """:meth:`get_result` from async code."""
        return await sync_to_async(self.get_result, thread_sensitive=True)(result_id)


def _canonical(args: list[Any], kwargs: dict[str, Any]) -> str:
    """The arguments as text that does not depend on keyword order."""
    try:
        return json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"))
    except TypeError:  # keys of mixed types cannot be sorted
        return json.dumps([args, kwargs], separators=(",", ":"))
