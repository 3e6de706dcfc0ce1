"""Exceptions raised by djtasks."""

from __future__ import annotations

from typing import Any


class DjtasksError(Exception):
    """Base class of every djtasks error."""


class ImproperlyConfiguredTask(DjtasksError, TypeError):  # noqa: N818 - reads like Django's ImproperlyConfigured
    """A task was declared or called with options that cannot work."""


class NotRegistered(DjtasksError, KeyError):  # noqa: N818 - Celery's name
    """No task with this name is registered in this process."""

    def __str__(self) -> str:
        name = self.args[0] if self.args else "?"
        if isinstance(name, str) and " is not registered" in name:
            return name  # rebuilt from a stored message
        return (
            f"task {name!r} is not registered: is its module in an installed "
            "app's tasks.py or in DJTASKS_IMPORTS?"
        )


class AlreadyRegistered(DjtasksError):  # noqa: N818 - Celery's name
    """Two different functions were registered under one task name."""


class DuplicateTask(DjtasksError):  # noqa: N818 - pairs with DuplicateTask in Celery-once
    """A call with a ``unique_key`` found an unfinished task with the same key."""


class EncodeError(DjtasksError, TypeError):
    """Arguments or a result could not be serialized."""


class DecodeError(DjtasksError, ValueError):
    """A stored payload could not be deserialized."""


class ContentDisallowed(DecodeError):  # noqa: N818 - kombu's name
    """A payload's content type is not in ``DJTASKS_ACCEPT_CONTENT``."""


class TimeoutError(DjtasksError, TimeoutError):  # noqa: A001 - the name Celery users catch
    """``AsyncResult.get()`` waited longer than its ``timeout``."""


class TaskError(DjtasksError):
    """A task failed with an exception type this process cannot rebuild.

    ``remote_type`` holds the dotted name of the original exception class,
    ``remote_message`` its message and ``remote_traceback`` the worker's
    traceback.
    """

    def __init__(self, remote_type: str, remote_message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback


class TaskRevokedError(DjtasksError):
    """The task was revoked (cancelled, or expired) before it finished."""


class WorkerLostError(DjtasksError):
    """The worker running the task stopped before recording its outcome."""


class Retry(DjtasksError):  # noqa: N818 - Celery's name
    """Raised by ``self.retry()`` to end this run and schedule another.

    The worker catches it; task code should let it propagate.
    """

    def __init__(
        self, message: str | None = None, exc: BaseException | None = None, when: Any = None
    ) -> None:
        self.exc = exc
        self.when = when
        super().__init__(message or (f"Retry in {when}s" if when is not None else "Retry"))


class MaxRetriesExceededError(DjtasksError):
    """``self.retry()`` was called after ``max_retries`` retries."""


class Reject(DjtasksError):  # noqa: N818 - Celery's name
    """Raised by a task to refuse its message: it ends FAILURE without retry."""


class TimeLimitExceeded(DjtasksError):  # noqa: N818 - Celery's name
    """The task ran past its hard ``time_limit`` and its process was stopped."""


class SoftTimeLimitExceeded(DjtasksError):  # noqa: N818 - Celery's name
    """Raised inside a task that ran past its ``soft_time_limit``."""
