"""Runs ONE task and says how it ended.

Used by every pool (in the process or thread that runs the task) and by
``Task.apply()``. It never touches the queue tables itself: it returns an
:class:`~djtasks.queue.Outcome` for the worker to write in a batch.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback as tb
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.utils import timezone

from .. import serialization, signals, states
from ..backends import execution as django_tasks
from ..conf import settings
from ..exceptions import DecodeError, NotRegistered, Reject, Retry
from ..queue import Claimed, Outcome
from ..registry import tasks as registry
from ..request import Request, current_request
from ..result import EagerResult
from ..task import Task

logger = logging.getLogger("djtasks.worker")


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass
class Run:
    """The outcome of one run, with Python values for eager callers."""

    state: str
    value: Any = None
    exc: BaseException | None = None
    traceback: str = ""
    retry_eta: dt.datetime | None = None
    retry_args: Any = None
    retry_kwargs: Any = None
    runtime: float = 0.0


def send(signal: Any, **kwargs: Any) -> None:
    """Send a signal; a receiver that raises is logged, never breaks the task's outcome."""
    for receiver, result in signal.send_robust(**kwargs):
        if isinstance(result, Exception):
            logger.error(
                "signal receiver %r raised %s: %s",
                receiver,
                type(result).__name__,
                result,
                exc_info=result,
            )


def _run(task: Task, request: Request) -> Run:
    """Call the task function under ``request``, sending the task signals."""
    token = current_request.set(request)
    args, kwargs = request.args, request.kwargs
    send(signals.task_prerun, sender=task, task_id=request.id, task=task, args=args, kwargs=kwargs)
    started = time.perf_counter()
    run: Run
    try:
        try:
            value = task(*args, **kwargs)
        except Retry:
            raise
        except task.autoretry_for as exc:  # type: ignore[misc]
            retry_kwargs = {k: v for k, v in task.retry_kwargs.items() if k != "countdown"}
            task.retry(exc=exc, countdown=task.countdown_for_retry(request.retries), **retry_kwargs)
            raise AssertionError("unreachable") from exc  # retry() always raises
        run = Run(states.SUCCESS, value=value)
    except Retry as retry:
        now = timezone.now()
        when = retry.when
        eta = when if isinstance(when, dt.datetime) else now + dt.timedelta(seconds=when or 0)
        cause = retry.exc if retry.exc is not None else retry
        run = Run(
            states.RETRY,
            exc=cause,
            traceback=_format(cause),
            retry_eta=eta,
            retry_args=getattr(retry, "args_override", None),
            retry_kwargs=getattr(retry, "kwargs_override", None),
        )
        send(signals.task_retry, sender=task, request=request, reason=cause, einfo=run.traceback)
    except BaseException as exc:  # a task may raise anything, even SystemExit
        run = Run(states.FAILURE, exc=exc, traceback=_format(exc))
        send(
            signals.task_failure,
            sender=task,
            task_id=request.id,
            exception=exc,
            args=args,
            kwargs=kwargs,
            traceback=exc.__traceback__,
            einfo=run.traceback,
        )
    finally:
        current_request.reset(token)
    run.runtime = time.perf_counter() - started
    send(
        signals.task_postrun,
        sender=task,
        task_id=request.id,
        task=task,
        args=args,
        kwargs=kwargs,
        retval=run.value if run.exc is None else run.exc,
        state=run.state,
    )
    return run


def _format(exc: BaseException) -> str:
    return "".join(tb.format_exception(type(exc), exc, exc.__traceback__))


def run_eagerly(task: Task, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> EagerResult:
    """Run ``task`` in this process, retrying at once as a worker would later."""
    retries = 0
    while True:
        request = Request(
            id=task_id,
            task=task.name,
            args=args,
            kwargs=kwargs,
            retries=retries,
            attempt=retries + 1,
            is_eager=True,
            called_directly=False,
            hostname="eager",
        )
        run = _run(task, request)
        if run.state != states.RETRY:
            break
        retries += 1
        if run.retry_args is not None:
            args = list(run.retry_args)
        if run.retry_kwargs is not None:
            kwargs = dict(run.retry_kwargs)
    value = run.exc if run.state == states.FAILURE else run.value
    return EagerResult(task_id, value, run.state, run.traceback or None, task.name, retries)


def execute(claimed: Claimed, hostname: str) -> Outcome:
    """Run a claimed task in this process and return its outcome.

    Never raises for anything the row or the task does: a name that is not
    registered, a payload that does not decode, a result that does not
    encode all become a FAILURE outcome saying why.
    """
    try:
        outcome = _execute(claimed, hostname)
        outcome.task_name = claimed.name
        outcome.root_id = claimed.root_id
        value = outcome.__dict__.pop("_value", None)
        failure = outcome.__dict__.pop("_failure", None)
        if claimed.headers and isinstance(claimed.headers, dict):
            _plan_workflow(claimed, outcome, value, failure)
        outcome.workflow_planned = True
        return outcome
    finally:
        _drop_broken_connections()


def _execute(claimed: Claimed, hostname: str) -> Outcome:
    def failure(
        exc_type: str, message: str, trace: str = "", runtime: float | None = None
    ) -> Outcome:
        return Outcome(
            claimed.id,
            claimed.attempt,
            states.FAILURE,
            timezone.now(),
            runtime=runtime,
            exc_type=exc_type,
            exc_message=message,
            traceback=trace,
        )

    if not isinstance(claimed.headers, dict):
        return failure(
            "djtasks.exceptions.DecodeError",
            f"the headers are not a JSON object: {claimed.headers!r}"[:1000],
        )
    if django_tasks.is_django_task(claimed):
        # Enqueued through django.tasks (djtasks.backends.DatabaseBackend): the
        # backend loads the task by its own rules, never through the registry.
        return django_tasks.execute(claimed, hostname)
    try:
        task = registry.get(claimed.name)
    except NotRegistered as exc:
        # Only names in the registry ever run: a row cannot name arbitrary code.
        return failure("djtasks.exceptions.NotRegistered", str(exc))
    try:
        # Verifies the signature (task name, content type, payload) before
        # anything is decoded; refused rows never run.
        args, kwargs = serialization.decode_arguments(
            claimed.content_type, claimed.payload, task_name=claimed.name
        )
    except DecodeError as exc:
        send(
            signals.task_failure,
            sender=task,
            task_id=claimed.id,
            exception=exc,
            args=[],
            kwargs={},
            traceback=None,
            einfo="",
        )
        return failure(type_name(exc), f"cannot decode the arguments: {exc}")
    request = Request.for_claimed(claimed, hostname, args, kwargs)
    run = _run(task, request)
    done = timezone.now()
    if run.state == states.SUCCESS:
        if claimed.ignore_result or task.ignore_result:
            outcome = Outcome(claimed.id, claimed.attempt, states.SUCCESS, done, run.runtime)
        else:
            try:
                content_type, text = serialization.encode(run.value, settings.RESULT_SERIALIZER)
            except Exception as exc:
                return failure(
                    type_name(exc), f"the return value cannot be stored: {exc}", runtime=run.runtime
                )
            outcome = Outcome(
                claimed.id,
                claimed.attempt,
                states.SUCCESS,
                done,
                run.runtime,
                result=text,
                result_content_type=content_type,
            )
        outcome.__dict__["_value"] = run.value  # for the workflow; never pickled
        send(signals.task_success, sender=task, result=run.value)
        return outcome
    exc = run.exc
    if exc is None:  # not SUCCESS, so _run() recorded why
        raise RuntimeError(f"run of {task.name} ended {run.state} without an exception")
    if run.state == states.RETRY:
        new_payload = None
        if run.retry_args is not None or run.retry_kwargs is not None:
            try:
                # The row keeps its content type: encode (and sign) to match it.
                new_payload = serialization.reencode_arguments(
                    task.name,
                    claimed.content_type,
                    run.retry_args if run.retry_args is not None else args,
                    run.retry_kwargs if run.retry_kwargs is not None else kwargs,
                )
            except Exception as enc_exc:
                return failure(
                    type_name(enc_exc),
                    f"retry arguments cannot be stored: {enc_exc}",
                    runtime=run.runtime,
                )
        return Outcome(
            claimed.id,
            claimed.attempt,
            states.RETRY,
            done,
            run.runtime,
            exc_type=type_name(exc),
            exc_message=_message(exc),
            traceback=run.traceback,
            retry_eta=run.retry_eta,
            new_payload=new_payload,
        )
    if isinstance(exc, Reject):
        logger.info("task %s[%s] rejected itself: %s", task.name, claimed.id, exc)
    outcome = Outcome(
        claimed.id,
        claimed.attempt,
        states.FAILURE,
        done,
        run.runtime,
        exc_type=type_name(exc),
        exc_message=_message(exc),
        traceback=run.traceback,
    )
    outcome.__dict__["_failure"] = (request, exc, run.traceback)  # for errbacks; never pickled
    return outcome


def _plan_workflow(
    claimed: Claimed,
    outcome: Outcome,
    value: Any,
    failure: tuple[Request, BaseException, str] | None = None,
) -> None:
    """Attach what comes next in a workflow to the outcome, to be written with it.

    Celery-style error callbacks (``(request, exc, traceback)``) are called
    here, in this process, as the exception object lives only here.
    """
    from .. import canvas

    headers = claimed.headers
    outcome.chord_id = headers.get("chord")
    if outcome.state == states.RETRY:
        return
    try:
        if outcome.state == states.SUCCESS:
            if headers.get("chain") or headers.get("link"):
                outcome.followups = canvas.after_success(
                    headers, claimed.id, claimed.root_id, value
                )
        elif headers.get("chain") or headers.get("link_error"):
            reason = f"{outcome.exc_type.rpartition('.')[2]}: {outcome.exc_message}"
            outcome.followups, outcome.skipped = canvas.after_failure(
                headers, claimed.id, claimed.root_id, reason
            )
            if failure is not None and headers.get("link_error"):
                canvas.call_errbacks_in_process(headers, *failure)
    except Exception as exc:
        # The step itself is done; say why the rest of its workflow is not,
        # and record the rest of its chain as not run rather than leave it
        # PENDING for ever.
        logger.exception("could not plan the next steps of %s[%s]", claimed.name, claimed.id)
        outcome.followups = None
        outcome.traceback += f"\n[djtasks] the next workflow steps could not be built: {exc}"
        try:
            outcome.skipped = canvas.not_run(
                headers,
                claimed.id,
                claimed.root_id,
                f"not run: the workflow could not go on after {claimed.id}: {exc}",
            )
        except Exception:
            outcome.skipped = []


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return repr(exc)


def _drop_broken_connections() -> None:
    # Keep connections for the whole life of the worker (reconnecting per task
    # costs several times the throughput), but drop one a task broke so the
    # next task gets a fresh one.
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:
            continue
        if not conn.get_autocommit():
            # A task left a transaction open: never let it leak into the next task.
            conn.rollback()
            conn.set_autocommit(True)
        if conn.errors_occurred:
            if conn.is_usable():
                conn.errors_occurred = False
            else:
                conn.close()
