"""Handles on task outcomes: :class:`AsyncResult` (a row) and :class:`EagerResult` (in process)."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from typing import Any

from django.utils import timezone

from . import exceptions, serialization, states
from .exceptions import TaskError, TaskRevokedError

_FIELDS = (
    "id",
    "name",
    "state",
    "custom_state",
    "result",
    "result_content_type",
    "exc_type",
    "exc_message",
    "traceback",
    "done_at",
    "retries",
    "worker",
    "queue",
    "parent_id",
    "root_id",
    "group_id",
    "ignore_result",
    "created_at",
    "started_at",
    "runtime",
)


def rebuild_exception(exc_type: str, message: str, traceback: str = "") -> BaseException:
    """Recreate a task's exception from its stored dotted type name.

    Only classes of modules this process has *already* imported are used: a
    module path taken from a row is never imported. Anything else becomes a
    :class:`TaskError` carrying the remote type, message and traceback.
    """
    if exc_type == f"{TaskRevokedError.__module__}.{TaskRevokedError.__qualname__}":
        return TaskRevokedError(message)
    module_name, _, qualname = exc_type.rpartition(".")
    module = sys.modules.get(module_name or "builtins")
    cls: Any = module
    for part in qualname.split("."):
        cls = getattr(cls, part, None) if cls is not None else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        with contextlib.suppress(Exception):  # a constructor that wants other arguments
            exc = cls(message)
            exc.remote_traceback = traceback  # type: ignore[attr-defined]
            return exc
    return TaskError(exc_type, message, traceback)


class AsyncResult:
    """The state and outcome of a task, by id.

    Reads the task's row when asked; an id with no row is ``PENDING`` (as in
    Celery: not yet inserted, unknown, or forgotten).
    """

    def __init__(self, id: Any, task_name: str | None = None) -> None:  # noqa: A002
        try:
            self.id = str(id if isinstance(id, uuid.UUID) else uuid.UUID(str(id)))
        except ValueError:
            raise ValueError(f"a task id is a UUID, not {id!r}") from None
        self.task_name = task_name
        self._row: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __str__(self) -> str:
        return self.id

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return self.id == other.id
        if isinstance(other, str):
            return self.id == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    # -- reading -------------------------------------------------------------

    def _fetch(self) -> dict[str, Any] | None:
        if self._row is not None and self._row["state"] in states.READY_STATES:
            return self._row  # a finished row never changes again
        from . import queue
        from .models import TaskRecord

        self._row = (
            TaskRecord.objects.using(queue.db_alias()).filter(pk=self.id).values(*_FIELDS).first()
        )
        return self._row

    @property
    def state(self) -> str:
        """The task's state; a custom state (``PROGRESS``) while it reports one."""
        row = self._fetch()
        if row is None:
            return states.PENDING
        if row["state"] == states.STARTED and row["custom_state"]:
            return row["custom_state"]
        return row["state"]

    status = state

    @property
    def name(self) -> str | None:
        row = self._fetch()
        return row["name"] if row else self.task_name

    @property
    def result(self) -> Any:
        """The return value; the exception for a failed task; the meta of a custom state."""
        row = self._fetch()
        if row is None:
            return None
        if row["state"] in (states.FAILURE, states.REVOKED, states.RETRY):
            return rebuild_exception(row["exc_type"], row["exc_message"], row["traceback"])
        if row["result"] is None:
            return None
        return serialization.decode(row["result_content_type"], row["result"])

    info = result

    @property
    def traceback(self) -> str | None:
        row = self._fetch()
        return (row["traceback"] or None) if row else None

    @property
    def date_done(self):  # -> datetime | None
        row = self._fetch()
        return row["done_at"] if row else None

    @property
    def retries(self) -> int:
        row = self._fetch()
        return row["retries"] if row else 0

    @property
    def worker(self) -> str | None:
        row = self._fetch()
        return (row["worker"] or None) if row else None

    @property
    def queue(self) -> str | None:
        row = self._fetch()
        return row["queue"] if row else None

    @property
    def runtime(self) -> float | None:
        row = self._fetch()
        return row["runtime"] if row else None

    @property
    def parent(self) -> AsyncResult | GroupResult | None:
        """The result of the step before this one (chains, chord bodies)."""
        known = getattr(self, "_parent", None)
        if known is not None:
            return known
        row = self._fetch()
        if row is None or row["parent_id"] is None:
            return None
        return AsyncResult(row["parent_id"])

    def ready(self) -> bool:
        """True once the task has finished (SUCCESS, FAILURE or REVOKED)."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    # -- waiting ---------------------------------------------------------------

    def get(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.05
    ) -> Any:
        """Wait for the task to finish and return its result.

        :param timeout: seconds to wait; ``None`` waits for ever.
        :param propagate: re-raise the task's exception if it failed or was revoked.
        :param interval: seconds between polls of the row.
        :raises djtasks.exceptions.TimeoutError: the task did not finish in time.
        :raises: the task's own exception type if this process has it imported,
            else :class:`~djtasks.exceptions.TaskError`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ready():
            if deadline is not None and time.monotonic() >= deadline:
                raise exceptions.TimeoutError(
                    f"task {self.id} did not finish within {timeout}s (state {self.state})"
                )
            time.sleep(
                interval
                if deadline is None
                else max(0.0, min(interval, deadline - time.monotonic()))
            )
        return self._outcome(propagate)

    wait = get

    def _outcome(self, propagate: bool) -> Any:
        value = self.result
        if self.state in states.PROPAGATE_STATES and propagate:
            raise value
        return value

    # -- changing ------------------------------------------------------------

    def revoke(self, terminate: bool = False) -> bool:
        """Cancel the task; return whether it was revoked (or is being terminated).

        A task that has not started ends ``REVOKED`` and never runs. A running
        one is stopped only with ``terminate=True``: the worker running it (in
        a prefork pool) kills its process, and the task ends ``REVOKED``.
        """
        from . import queue

        self._row = None
        if not terminate:
            return bool(queue.revoke([self.id], "revoked by AsyncResult.revoke()", timezone.now()))
        from .control import revoke

        report = revoke([self.id], terminate=True, reason="revoked by AsyncResult.revoke()")
        return bool(report.revoked or report.terminated or report.terminating)

    def forget(self) -> None:
        """Delete the stored outcome (the row, once the task has finished)."""
        from . import queue

        queue.forget(self.id)
        self._row = None

    # -- for web pages -----------------------------------------------------------

    def status_url(self) -> str:
        """The URL of this task's JSON status, signed so that only its holder can read it.

        Needs ``path("…/", include("djtasks.urls"))`` in the project's URLconf.
        Works before the task's row is committed (it reads ``PENDING`` until then).

        :raises django.core.exceptions.ImproperlyConfigured: ``djtasks.urls`` is
            not included.
        """
        from django.core.exceptions import ImproperlyConfigured
        from django.urls import NoReverseMatch, reverse

        from .signing import sign_task_id

        try:
            return reverse("djtasks:status", args=[sign_task_id(self.id)])
        except NoReverseMatch:
            raise ImproperlyConfigured(
                'status_url() needs the djtasks URLs: add path("tasks/", '
                'include("djtasks.urls")) to your URLconf'
            ) from None


class EagerResult(AsyncResult):
    """The outcome of a task run in this process by ``apply()`` or eager mode."""

    def __init__(
        self,
        id: Any,  # noqa: A002 - Celery's name
        value: Any,
        state: str,
        traceback: str | None = None,
        task_name: str | None = None,
        retries: int = 0,
    ) -> None:
        super().__init__(id, task_name)
        self._value = value
        self._state = state
        self._traceback = traceback
        self._retries = retries
        self._date_done = timezone.now()

    def __repr__(self) -> str:
        return f"<EagerResult: {self.id}>"

    @property
    def state(self) -> str:
        return self._state

    status = state

    @property
    def result(self) -> Any:
        return self._value

    info = result

    @property
    def traceback(self) -> str | None:
        return self._traceback

    @property
    def date_done(self):  # -> datetime
        return self._date_done

    @property
    def retries(self) -> int:
        return self._retries

    # Ran here: nothing to read from the database.
    name = property(lambda self: self.task_name)
    worker = property(lambda self: "eager")
    queue = property(lambda self: None)
    runtime = property(lambda self: None)
    parent = property(lambda self: getattr(self, "_parent", None))

    def get(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.05
    ) -> Any:
        return self._outcome(propagate)

    wait = get

    def revoke(self, terminate: bool = False) -> bool:
        return False

    def forget(self) -> None:
        pass


class GroupResult:
    """The results of a ``group``, in the order of its members."""

    def __init__(self, id: Any, results: list[AsyncResult]) -> None:  # noqa: A002
        self.id = str(id)
        self.results = list(results)

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    @classmethod
    def restore(cls, group_id: Any) -> GroupResult | None:
        """Load a group's result handle by its id (``None`` if unknown)."""
        from . import queue
        from .models import TaskGroup

        members = (
            TaskGroup.objects.using(queue.db_alias())
            .filter(pk=group_id)
            .values_list("member_ids", flat=True)
            .first()
        )
        if members is None:
            return None
        return cls(group_id, [AsyncResult(m) for m in members])

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        """How many members finished successfully."""
        return sum(1 for r in self.results if r.successful())

    def revoke(self, terminate: bool = False) -> None:
        for r in self.results:
            r.revoke(terminate=terminate)

    def forget(self) -> None:
        for r in self.results:
            r.forget()

    def get(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.05
    ) -> list[Any]:
        """Wait for every member; return their results in order."""
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for r in self.results:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            values.append(r.get(timeout=left, propagate=propagate, interval=interval))
        return values

    join = get
