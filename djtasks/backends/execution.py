"""Runs a django.tasks row in the worker: the worker's half of the backend.

:func:`djtasks.worker.executor.execute` hands every claimed row whose headers
carry :data:`~djtasks.backends.HEADER` to :func:`execute` here, in the process
(or thread) of the pool that runs it. Like the executor, :func:`execute`
returns an :class:`~djtasks.queue.Outcome` and never raises for anything the
row or the task does.

This module imports on any Django: a worker on Django 5.2 that meets such a
row fails it, saying why, instead of dying.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import traceback as tb
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any

import django
from django.db import DatabaseError
from django.utils import timezone

from .. import states
from ..exceptions import DecodeError, SoftTimeLimitExceeded
from ..queue import Claimed, Outcome
from ..request import Request, current_request
from . import HEADER

if TYPE_CHECKING:
    from django.tasks import Task

    from .database import DatabaseBackend
    from .options import QueueOptions
    from .results import History

logger = logging.getLogger("djtasks.worker")


def is_django_task(claimed: Claimed) -> bool:
    """Whether ``claimed`` was enqueued through django.tasks (by its headers)."""
    return isinstance(claimed.headers, dict) and HEADER in claimed.headers


def _type_name(exc: BaseException | type[BaseException]) -> str:
    cls = exc if isinstance(exc, type) else type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not lose the outcome
        return repr(exc)


class _Refused(Exception):  # noqa: N818 - internal: the row cannot run, and why
    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(message)
        self.exc_type = exc_type
        self.message = message


def execute(claimed: Claimed, hostname: str) -> Outcome:
    """Run the django.tasks task of ``claimed`` here; return how it ended.

    A row that names no usable backend, a task the loading rules refuse
    (:mod:`djtasks.backends.loading`) or a payload that is not ``[args,
    kwargs]`` ends FAILURE without running anything.
    """
    try:
        backend, task, args, kwargs = _prepare(claimed)
    except _Refused as refused:
        logger.error("%s[%s] cannot run: %s", claimed.name, claimed.id, refused.message)
        return Outcome(
            claimed.id,
            claimed.attempt,
            states.FAILURE,
            timezone.now(),
            exc_type=refused.exc_type,
            exc_message=refused.message,
        )
    return _run(claimed, hostname, backend, task, args, kwargs)


def _prepare(claimed: Claimed) -> tuple[DatabaseBackend, Task, list[Any], dict[str, Any]]:
    try:
        from django.tasks import task_backends
    except ImportError:
        raise _Refused(
            "django.core.exceptions.ImproperlyConfigured",
            "this task was enqueued through django.tasks, which needs Django >= "
            f"6.0; this worker runs Django {django.get_version()}",
        ) from None
    from django.utils.json import normalize_json

    from .database import DatabaseBackend
    from .loading import TaskNotLoadable, load_task
    from .results import bind, decode_arguments

    marker = claimed.headers[HEADER]
    alias = marker.get("backend") if isinstance(marker, dict) else None
    if not isinstance(alias, str):
        raise _Refused(
            "django.tasks.exceptions.InvalidTaskBackend", f"the {HEADER!r} header names no backend"
        )
    try:
        backend = task_backends[alias]
    except Exception as exc:  # unknown alias, unimportable backend, ...
        raise _Refused(_type_name(exc), f"TASKS[{alias!r}]: {_message(exc)}") from None
    if not isinstance(backend, DatabaseBackend):
        raise _Refused(
            "django.tasks.exceptions.InvalidTaskBackend",
            f"TASKS[{alias!r}] is {type(backend).__name__}, not djtasks.backends.DatabaseBackend",
        )
    if backend.option_errors:
        raise _Refused(
            "django.core.exceptions.ImproperlyConfigured",
            f"TASKS[{alias!r}]['OPTIONS'] is invalid: " + "; ".join(backend.option_errors),
        )
    try:
        task = load_task(claimed.name)
    except TaskNotLoadable as exc:
        raise _Refused(_type_name(exc), str(exc)) from None
    try:
        args, kwargs = decode_arguments(claimed.content_type, claimed.payload, claimed.name)
    except DecodeError as exc:  # includes ContentDisallowed and BadSignature
        raise _Refused(_type_name(exc), str(exc)) from None
    try:
        # What enqueue() wrote is JSON already; a forged row may hold a
        # tagged value (a datetime, a UUID) that django.tasks cannot carry.
        args, kwargs = normalize_json(args), normalize_json(kwargs)
    except (TypeError, ValueError) as exc:
        raise _Refused("djtasks.exceptions.DecodeError", f"payload: {exc}") from None
    run_after = _datetime(claimed.eta) if marker.get("run_after") else None
    task = bind(
        task,
        priority=claimed.priority,
        queue_name=claimed.queue,
        backend=alias,
        run_after=run_after,
    )
    return backend, task, args, kwargs


def _datetime(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    from .. import queue

    conn = queue.connection()
    try:
        return conn.ops.convert_datetimefield_value(value, None, conn)
    except (TypeError, ValueError):
        return None


def _run(
    claimed: Claimed,
    hostname: str,
    backend: DatabaseBackend,
    task: Task,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Outcome:
    from django.tasks import TaskContext
    from django.tasks.signals import task_finished, task_started
    from django.utils.json import normalize_json

    from .results import task_result

    opts = backend.parsed_options.for_queue(claimed.queue)
    history = _history(claimed)
    started = timezone.now()
    if history.started_at is None:
        history.started_at = started
    marker = claimed.headers[HEADER]
    enqueued = _iso(marker.get("enqueued_at"))

    def result_now(state: str, done_at: dt.datetime | None = None) -> Any:
        return task_result(
            task=task,
            result_id=claimed.id,
            alias=backend.alias,
            state=state,
            args=args,
            kwargs=kwargs,
            enqueued_at=enqueued,
            started_at=started,
            done_at=done_at,
            worker=hostname,
            exc_type="",
            exc_message="",
            traceback="",
            history=history,
        )

    running = result_now(states.STARTED)
    history.worker_ids = list(running.worker_ids)
    signal_sender = type(backend)
    token = current_request.set(
        Request(
            id=claimed.id,
            task=claimed.name,
            args=args,
            kwargs=kwargs,
            retries=claimed.retries,
            attempt=claimed.attempt,
            queue=claimed.queue,
            priority=claimed.priority,
            headers=claimed.headers,
            hostname=hostname,
            called_directly=False,
        )
    )
    began = time.perf_counter()
    try:
        try:
            task_started.send(signal_sender, task_result=running)
            call_args = [TaskContext(task_result=running), *args] if task.takes_context else args
            # normalize_json raises for what JSON cannot hold (as Django's own
            # backends do): the task then fails, like one that raised.
            history.return_value = normalize_json(_call(task, opts, call_args, kwargs))
            history.final = True
            content_type, text = history.encode()
        except BaseException as exc:  # a task may raise anything, even SystemExit
            runtime = time.perf_counter() - began
            history.return_value = None
            history.final = False
            history.errors.append((_type_name(exc), "".join(tb.format_exception(exc))))
            if _should_retry(claimed, opts, exc):
                return _retry(claimed, opts, history, exc, runtime)
            history.final = True
            content_type, text = history.encode()
            done = timezone.now()
            _send_finished(task_finished, signal_sender, result_now(states.FAILURE, done))
            return Outcome(
                claimed.id,
                claimed.attempt,
                states.FAILURE,
                done,
                runtime,
                result=text,
                result_content_type=content_type,
                exc_type=_type_name(exc),
                exc_message=_message(exc),
                traceback=history.errors[-1][1],
            )
        runtime = time.perf_counter() - began
        done = timezone.now()
        _send_finished(task_finished, signal_sender, result_now(states.SUCCESS, done))
        return Outcome(
            claimed.id,
            claimed.attempt,
            states.SUCCESS,
            done,
            runtime,
            result=text,
            result_content_type=content_type,
        )
    finally:
        current_request.reset(token)


def _call(task: Task, opts: QueueOptions, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if not iscoroutinefunction(task.func):
        return task.func(*args, **kwargs)
    from asgiref.sync import async_to_sync

    # async_to_sync (as Task.call does) runs the coroutine in a fresh event
    # loop while this thread serves its sync_to_async calls, so the ORM inside
    # the task uses this thread's connection, which the executor looks after.
    return async_to_sync(_run_coroutine)(task.func, opts.soft_time_limit, args, kwargs)


async def _run_coroutine(
    func: Any, soft_limit: float | None, args: list[Any], kwargs: dict[str, Any]
) -> Any:
    if soft_limit is None:
        return await func(*args, **kwargs)
    timeout = asyncio.timeout(soft_limit)
    try:
        async with timeout:
            return await func(*args, **kwargs)
    except TimeoutError:
        if timeout.expired():
            raise SoftTimeLimitExceeded(
                f"soft time limit ({soft_limit}s) exceeded; the coroutine was cancelled"
            ) from None
        raise


def _should_retry(claimed: Claimed, opts: QueueOptions, exc: BaseException) -> bool:
    return claimed.retries + 1 < opts.max_attempts and isinstance(exc, opts.retry_classes())


def _retry(
    claimed: Claimed, opts: QueueOptions, history: History, exc: BaseException, runtime: float
) -> Outcome:
    from .. import queue
    from ..task import backoff_countdown

    delay = backoff_countdown(claimed.retries, opts.backoff, opts.backoff_max, opts.backoff_jitter)
    now = timezone.now()
    try:
        # The row keeps ``result`` while it waits (a RETRY outcome does not
        # write it), so the next run finds this history there.
        queue.set_progress(claimed.id, "", *history.encode())
    except DatabaseError as db_exc:
        logger.warning(
            "%s[%s]: could not store the error history (%s); the next run will not list this error",
            claimed.name,
            claimed.id,
            db_exc,
        )
    logger.info(
        "%s[%s] failed (attempt %d of %d), runs again in %.1fs: %s: %s",
        claimed.name,
        claimed.id,
        claimed.retries + 1,
        opts.max_attempts,
        delay,
        _type_name(exc),
        _message(exc),
    )
    return Outcome(
        claimed.id,
        claimed.attempt,
        states.RETRY,
        now,
        runtime,
        exc_type=_type_name(exc),
        exc_message=_message(exc),
        traceback=history.errors[-1][1],
        retry_eta=now + dt.timedelta(seconds=delay),
    )


def _history(claimed: Claimed) -> History:
    """The history of earlier runs: stored in the row only if it ran before."""
    from .results import History

    if not claimed.retries:
        return History()
    from .. import queue
    from ..models import TaskRecord

    try:
        row = (
            TaskRecord.objects.using(queue.db_alias())
            .filter(pk=claimed.db_id)
            .values_list("result_content_type", "result")
            .first()
        )
    except DatabaseError as exc:
        # The run goes ahead; only its TaskResult lacks the earlier runs.
        logger.warning(
            "%s[%s]: could not read the history of earlier runs (%s)", claimed.name, claimed.id, exc
        )
        return History()
    return History.decode(*row) if row else History()


def _send_finished(signal: Any, sender: Any, task_result: Any) -> None:
    # The outcome is decided: a failing receiver is logged, not turned into a
    # second failure of the task.
    try:
        signal.send(sender, task_result=task_result)
    except Exception:
        logger.exception(
            "a task_finished receiver failed for %s[%s]",
            task_result.task.module_path,
            task_result.id,
        )


def _iso(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None
