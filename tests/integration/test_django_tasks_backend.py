"""Conformance of ``djtasks.backends.DatabaseBackend`` with Django's own task tests.

Django's ``tests/tasks/`` (6.1) is written against its Dummy and Immediate
backends, with those backends hard-wired in ``override_settings``, so it
cannot be pointed at another backend as it is. Each case that applies to any
backend is rewritten here, case by case, against DatabaseBackend; the test
docstrings name the Django case (``test_tasks.py``: TaskTestCase,
``test_dummy_backend.py``: what a deferred backend returns at enqueue,
``test_immediate_backend.py``: what running a task produces). Runs are done
by the worker's own code (claim → executor → record), in this process; the
acceptance tests do the same with real ``taskworker`` processes.

Cases that do not apply, and why:

- ``test_tasks``: ``test_using_unknown_backend``, ``test_using_missing_backend``,
  ``test_no_backends`` (Django's TASKS handler, not a backend);
  ``test_using_priority``/``_queue_name``/``_run_after``/``_creates_new_instance``,
  ``test_chained_using``, ``test_call_task*``, ``test_call_async_task*``,
  ``test_name``, ``test_pickle_task``, ``test_unpickle_*``,
  ``test_run_after_in_decorator`` (the ``Task`` value object, which no backend
  touches; the backend's side of ``using()``, validation, is tested here).
- ``test_dummy_backend``: ``test_clear`` (a DummyBackend-only method);
  ``DummyBackendTransactionTestCase`` (the opposite holds here, by design:
  enqueue is transactional, see ``test_enqueue_is_transactional``).
- ``test_immediate_backend``: ``test_cannot_get_result``,
  ``test_cannot_refresh_result``, ``test_cannot_pass_run_after`` (this backend
  supports both; see ``test_run_after_*``); ``test_throws_keyboard_interrupt``
  (Ctrl-C belongs to the worker's parent; a task that raises KeyboardInterrupt
  itself fails, see ``test_keyboard_interrupt_fails_the_task``);
  ``ImmediateBackendTransactionTestCase`` (as for the dummy backend).
- ``test_custom_backend``: all (subclassing ``BaseTaskBackend`` and custom
  ``task_class``, not the behaviour of a backend).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import pickle
import re
import sys
import uuid
from typing import Any
from unittest import mock

import pytest

pytest.importorskip("django.tasks", reason="django.tasks needs Django >= 6.0")

from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.tasks import (
    Task,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from django.tasks.exceptions import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone

from djtasks import queue, states
from djtasks.backends import HEADER, DatabaseBackend
from djtasks.exceptions import EncodeError
from djtasks.models import TaskRecord
from djtasks.worker.executor import execute
from tests.django_tasks_app import config
from tests.django_tasks_app import tasks as t
from tests.support import in_other_connection

pytestmark = pytest.mark.django_db

WORKER = "conformance@test"


@pytest.fixture(autouse=True)
def tasks_settings(settings: Any) -> None:
    settings.TASKS = config.TASKS
    settings.DJTASKS_IMPORTS = config.IMPORTS


def run_queued(queues: tuple[str, ...] = ("default",), worker: str = WORKER) -> int:
    """Run every due task of ``queues`` as a worker would: claim, start, execute,
    record; until none is due. Returns how many runs there were."""
    runs = 0
    while True:
        now = timezone.now()
        claimed = queue.claim(worker, list(queues), 20, now, 60)
        if not claimed:
            return runs
        started = queue.start(worker, claimed, now)
        queue.complete([execute(c, worker) for c in claimed if c.id in started])
        runs += len(started)


def row(result: Any) -> TaskRecord:
    return TaskRecord.objects.get(pk=result.id)


def raw_row(name: str, payload: str = "[[], {}]", header: Any = None, **fields: Any) -> str:
    """A django.tasks row written straight into the table (a forged or stale one)."""
    headers = {HEADER: {"backend": "default"} if header is None else header}
    return str(TaskRecord.objects.create(name=name, payload=payload, headers=headers, **fields).id)


# -- the backend and its flags (test_tasks, test_dummy_backend) ----------------------


def test_using_correct_backend() -> None:
    """TaskTestCase/DummyBackendTestCase.test_using_correct_backend."""
    assert default_task_backend == task_backends["default"]
    assert isinstance(task_backends["default"], DatabaseBackend)
    assert default_task_backend.alias == "default"
    assert default_task_backend.options == config.TASKS["default"]["OPTIONS"]


def test_supports_everything() -> None:
    backend = task_backends["default"]
    assert backend.supports_defer is True
    assert backend.supports_async_task is True
    assert backend.supports_get_result is True
    assert backend.supports_priority is True


def test_task_decorator() -> None:
    """TaskTestCase.test_task_decorator."""
    assert isinstance(t.noop, Task)
    assert isinstance(t.noop_async, Task)
    assert isinstance(t.noop_bare, Task)


def test_get_backend() -> None:
    """TaskTestCase.test_get_backend."""
    assert t.noop.backend == "default"
    assert isinstance(t.noop.get_backend(), DatabaseBackend)
    other = t.noop.using(backend="other")
    assert other.backend == "other"
    assert isinstance(other.get_backend(), DatabaseBackend)


def test_check() -> None:
    """DummyBackendTestCase.test_check."""
    assert list(default_task_backend.check()) == []


# -- enqueue (test_tasks, test_dummy_backend) ---------------------------------------------


@pytest.mark.parametrize("task_", [t.noop, t.noop_async], ids=["sync", "async"])
def test_enqueue_task(task_: Task) -> None:
    """TaskTestCase.test_enqueue_task, DummyBackendTestCase.test_enqueue_task: a
    READY result, and the call is a row in the djtasks table."""
    result = task_.enqueue(1, two=3)
    assert result.status == TaskResultStatus.READY
    assert result.is_finished is False
    assert result.started_at is None
    assert result.last_attempted_at is None
    assert result.finished_at is None
    assert result.enqueued_at is not None
    with pytest.raises(ValueError, match="Task has not finished yet"):
        result.return_value  # noqa: B018
    assert result.task == task_
    assert result.args == [1]
    assert result.kwargs == {"two": 3}
    assert result.attempts == 0
    assert result.errors == []
    r = row(result)
    assert (r.name, r.queue, r.priority, r.state) == (
        task_.module_path,
        "default",
        0,
        states.PENDING,
    )
    assert r.headers[HEADER]["backend"] == "default"
    assert r.created_at == result.enqueued_at


@pytest.mark.parametrize("task_", [t.noop, t.noop_async], ids=["sync", "async"])
def test_aenqueue_task(task_: Task) -> None:
    """TaskTestCase.test_enqueue_task_async, DummyBackendTestCase.test_enqueue_task_async."""
    result = async_to_sync(task_.aenqueue)()
    assert result.status == TaskResultStatus.READY
    assert result.task == task_
    assert (result.args, result.kwargs, result.attempts) == ([], {}, 0)
    assert TaskRecord.objects.filter(pk=result.id).exists()


def test_enqueue_with_invalid_argument() -> None:
    """TaskTestCase.test_enqueue_with_invalid_argument: nothing is written."""
    with pytest.raises(TypeError, match="Unsupported type"):
        t.noop.enqueue(dt.datetime.now())
    assert not TaskRecord.objects.exists()


def test_aenqueue_with_invalid_argument() -> None:
    """TaskTestCase.test_aenqueue_with_invalid_argument."""
    with pytest.raises(TypeError, match="Unsupported type"):
        async_to_sync(t.noop.aenqueue)(dt.datetime.now())


def test_priority_and_queue_are_stored() -> None:
    result = t.noop.using(priority=7, queue_name="queue_1").enqueue()
    r = row(result)
    assert (r.priority, r.queue) == (7, "queue_1")
    assert t.noop.get_result(result.id).task == t.noop.using(priority=7, queue_name="queue_1")


def test_naive_datetime() -> None:
    """TaskTestCase.test_naive_datetime."""
    with pytest.raises(InvalidTask, match=re.escape("run_after must be an aware datetime.")):
        t.noop.using(run_after=dt.datetime.now())


def test_invalid_priority() -> None:
    """TaskTestCase.test_invalid_priority."""
    msg = f"priority must be a whole number between {TASK_MIN_PRIORITY} and {TASK_MAX_PRIORITY}."
    for bad in (-101, 101, 3.1):
        with pytest.raises(InvalidTask, match=msg):
            t.noop.using(priority=bad)
    for good in (100, -100, 0):
        t.noop.using(priority=good)


def test_unknown_queue_name() -> None:
    """TaskTestCase.test_unknown_queue_name: QUEUES restricts; an empty list does not."""
    with pytest.raises(InvalidTask, match=re.escape("Queue 'queue-2' is not valid for backend.")):
        t.noop.using(queue_name="queue-2")
    assert t.noop.using(queue_name="queue-2", backend="other").queue_name == "queue-2"


def test_queue_name_must_fit_the_table() -> None:
    with pytest.raises(InvalidTask, match="queue_name must be 1 to 100 characters"):
        t.noop.using(queue_name="q" * 101, backend="other")


def test_invalid_function() -> None:
    """TaskTestCase.test_invalid_function."""

    def local() -> None: ...

    for invalid in (any, local):
        with pytest.raises(
            InvalidTask, match=re.escape("Task function must be defined at a module level.")
        ):
            task()(invalid)


def test_takes_context_without_taking_context() -> None:
    """TaskTestCase.test_takes_context_without_taking_context."""
    with pytest.raises(
        InvalidTask,
        match=re.escape("Task takes context but does not have a first argument of 'context'."),
    ):
        task(takes_context=True)(t.meaning_of_life.func)


def test_validate_disallowed_async_task() -> None:
    """DummyBackendTestCase.test_validate_disallowed_async_task."""
    with (
        mock.patch.multiple(default_task_backend, supports_async_task=False),
        pytest.raises(InvalidTask, match=re.escape("Backend does not support async Tasks.")),
    ):
        default_task_backend.validate_task(t.noop_async)


def test_validate_on_enqueue(settings: Any) -> None:
    """DummyBackendTestCase/ImmediateBackendTestCase.test_validate_on_enqueue (+ aenqueue)."""
    custom = t.noop.using(queue_name="unknown_queue", backend="other")
    settings.TASKS = {
        "other": {"BACKEND": "djtasks.backends.DatabaseBackend", "QUEUES": ["queue-1"]}
    }
    with pytest.raises(InvalidTask, match="Queue 'unknown_queue' is not valid for backend"):
        custom.enqueue()
    with pytest.raises(InvalidTask, match="Queue 'unknown_queue' is not valid for backend"):
        async_to_sync(custom.aenqueue)()
    assert not TaskRecord.objects.exists()


def module_level_function() -> None:
    """Defined in a module the workers may not load (not an app, not in DJTASKS_IMPORTS)."""


def test_a_task_the_workers_would_refuse_fails_at_the_call_site() -> None:
    with pytest.raises(
        InvalidTask,
        match=re.escape(
            "djtasks workers would not run this task: module "
            "'tests.integration.test_django_tasks_backend' is not part of an installed app"
        ),
    ):
        task()(module_level_function)


def test_enqueue_logs(caplog: Any) -> None:
    """DummyBackendTestCase.test_enqueue_logs: one 'enqueued' record at enqueue."""
    with caplog.at_level(logging.DEBUG, logger="django.tasks"):
        result = t.noop.enqueue()
    messages = [r.getMessage() for r in caplog.records if r.name == "django.tasks"]
    assert len(messages) == 1
    assert "enqueued" in messages[0]
    assert result.id in messages[0]


def test_takes_context_enqueues_ready() -> None:
    """DummyBackendTestCase.test_takes_context."""
    assert t.own_id.enqueue().status == TaskResultStatus.READY


def test_enqueued_signal_is_sent_by_the_enqueuing_process() -> None:
    seen: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(
            (
                sender,
                task_result.id,
                os.getpid(),
                TaskRecord.objects.filter(pk=task_result.id).exists(),
            )
        )

    task_enqueued.connect(receiver)
    try:
        result = t.noop.enqueue()
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [(DatabaseBackend, result.id, os.getpid(), True)]


def test_enqueue_is_transactional() -> None:
    """Unlike DummyBackendTransactionTestCase: a rolled-back enqueue leaves nothing."""

    class RollbackError(Exception):
        pass

    with pytest.raises(RollbackError), transaction.atomic():
        result = t.noop.enqueue()
        assert TaskRecord.objects.filter(pk=result.id).exists()
        raise RollbackError
    assert not TaskRecord.objects.filter(pk=result.id).exists()


@pytest.mark.django_db(transaction=True)
def test_enqueue_is_visible_to_workers_only_on_commit() -> None:
    def visible(result_id: str) -> bool:
        return in_other_connection(lambda: TaskRecord.objects.filter(pk=result_id).exists())

    with transaction.atomic():
        result = t.noop.enqueue()
        assert result.enqueued_at is not None
        assert not visible(result.id)
    assert visible(result.id)


def test_options_reach_the_row() -> None:
    limited = t.sleep_for.using(queue_name="limited").enqueue(0)
    async_limited = t.async_sleep_for.using(queue_name="limited").enqueue(0)
    plain = t.sleep_for.enqueue(0)
    # [soft, hard] for the pool; an async task's soft limit is enforced in its loop.
    assert row(limited).headers["timelimit"] == [0.3, 1.0]
    assert row(async_limited).headers["timelimit"] == [None, 1.0]
    assert "timelimit" not in row(plain).headers
    assert row(plain).acks_late is False


def test_acks_late_option(settings: Any) -> None:
    settings.TASKS = {
        "default": {"BACKEND": "djtasks.backends.DatabaseBackend", "OPTIONS": {"acks_late": True}}
    }
    assert row(t.noop.enqueue()).acks_late is True


def test_unique_option_returns_the_unfinished_task(settings: Any) -> None:
    settings.TASKS = {
        "default": {"BACKEND": "djtasks.backends.DatabaseBackend", "OPTIONS": {"unique": True}}
    }
    seen: list[str] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        first = t.add.enqueue(1, 2)
        again = t.add.enqueue(1, 2)
        other = t.add.enqueue(2, 1)
    finally:
        task_enqueued.disconnect(receiver)
    assert again == first
    assert other.id != first.id
    assert seen == [first.id, other.id]  # nothing was enqueued the second time
    assert TaskRecord.objects.count() == 2
    run_queued()
    after = t.add.enqueue(1, 2)  # the first one finished: a new task
    assert after.id != first.id
    assert after.status == TaskResultStatus.READY


def test_unique_for_lets_the_key_go(settings: Any) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "djtasks.backends.DatabaseBackend",
            "OPTIONS": {"unique": True, "unique_for": 0.01},
        }
    }
    first = t.add.enqueue(1, 2)
    when = timezone.now() + dt.timedelta(seconds=1)
    with mock.patch("djtasks.backends.database.timezone.now", return_value=when):
        again = t.add.enqueue(1, 2)
    assert again.id != first.id


def test_invalid_options_are_reported_by_check_and_refused_at_enqueue(settings: Any) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "djtasks.backends.DatabaseBackend",
            "QUEUES": ["default"],
            "OPTIONS": {
                "max_attempts": 0,
                "retry_on": ["os.system"],
                "colour": "blue",
                "queues": {"elsewhere": {"time_limit": -1}},
            },
        }
    }
    messages = [m.msg for m in default_task_backend.check()]
    assert len(messages) == 5, messages
    assert all(m.startswith("TASKS['default']['OPTIONS']: ") for m in messages)
    joined = "\n".join(messages)
    for part in (
        "max_attempts must be an int >= 1",
        "'os.system' is not the dotted path of an exception class",
        "unknown option 'colour'",
        "queues['elsewhere']: not one of this backend's QUEUES",
        "queues['elsewhere']: time_limit must be",
    ):
        assert part in joined
    with pytest.raises(ImproperlyConfigured, match="max_attempts must be an int >= 1"):
        t.noop.enqueue()


def test_check_needs_djtasks_installed(settings: Any) -> None:
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "djtasks"]
    ids = [m.id for m in task_backends["default"].check()]
    assert ids == ["djtasks.backends.E003"]


# -- results (test_tasks, test_dummy_backend) ----------------------------------------------


def test_get_result() -> None:
    """TaskTestCase.test_get_result, DummyBackendTestCase.test_get_result: equal to
    what enqueue returned."""
    result = default_task_backend.enqueue(t.noop, (), {})
    assert t.noop.get_result(result.id) == result
    assert default_task_backend.get_result(result.id) == result


def test_get_result_async() -> None:
    """TaskTestCase.test_get_result_async, DummyBackendTestCase.test_get_result_async."""
    result = async_to_sync(default_task_backend.aenqueue)(t.noop, (), {})
    assert async_to_sync(t.noop.aget_result)(result.id) == result
    assert async_to_sync(default_task_backend.aget_result)(result.id) == result


def test_get_result_keeps_run_after_priority_and_arguments() -> None:
    when = timezone.now() + dt.timedelta(hours=1)
    enqueued = t.add.using(run_after=when, priority=-5).enqueue(1, b=[2, {"x": None}])
    again = t.add.get_result(enqueued.id)
    assert again == enqueued
    assert again.task.run_after == when


@pytest.mark.parametrize("bad_id", ["123", 123, str(uuid.uuid4())])
def test_get_missing_result(bad_id: Any) -> None:
    """TaskTestCase/DummyBackendTestCase.test_get_missing_result (+ aget)."""
    with pytest.raises(TaskResultDoesNotExist):
        t.noop.get_result(bad_id)
    with pytest.raises(TaskResultDoesNotExist):
        async_to_sync(t.noop.aget_result)(bad_id)


def test_get_incorrect_result() -> None:
    """TaskTestCase.test_get_incorrect_result (+ async)."""
    result = default_task_backend.enqueue(t.noop_async, (), {})
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        t.noop.get_result(result.id)
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        async_to_sync(t.noop.aget_result)(result.id)


def test_results_belong_to_their_backend_and_to_django_tasks(temp_task: Any) -> None:
    other = t.noop.using(backend="other").enqueue()
    assert task_backends["other"].get_result(other.id) == other
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(other.id)
    native = temp_task(lambda: None).delay()  # a djtasks task, same table
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(native.id)


def test_refresh_result_unchanged() -> None:
    """TaskTestCase.test_refresh_result: refresh() and arefresh() of a waiting task."""
    result = async_to_sync(t.noop.aenqueue)()
    before = dataclasses.asdict(result)
    result.refresh()
    assert dataclasses.asdict(result) == before
    async_to_sync(result.arefresh)()
    assert dataclasses.asdict(result) == before


def test_refresh_result_after_a_run() -> None:
    """DummyBackendTestCase.test_refresh_result (+ async): refresh() shows the outcome."""
    result = default_task_backend.enqueue(t.meaning_of_life, (), {})
    second = default_task_backend.enqueue(t.meaning_of_life, (), {})
    assert run_queued() == 2
    assert result.status == TaskResultStatus.READY
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    async_to_sync(second.arefresh)()
    assert second.status == TaskResultStatus.SUCCESSFUL


@pytest.mark.skipif(
    not hasattr(Task, "_reconstruct"), reason="Django 6.0 cannot pickle tasks (6.1 can)"
)
def test_pickle_task_result() -> None:
    """TaskTestCase.test_pickle_task_result."""
    result = t.noop.enqueue()
    assert pickle.loads(pickle.dumps(result)) == result  # noqa: S301 - our own bytes
    run_queued()
    result.refresh()
    assert pickle.loads(pickle.dumps(result)) == result  # noqa: S301


def test_errors_empty_before_running() -> None:
    """DummyBackendTestCase.test_errors."""
    assert t.noop.enqueue().errors == []


# -- running (test_immediate_backend) ---------------------------------------------------


@pytest.mark.parametrize("task_", [t.noop, t.noop_async], ids=["sync", "async"])
def test_run_task(task_: Task) -> None:
    """ImmediateBackendTestCase.test_enqueue_task (+ _async): the outcome, read back."""
    enqueued = task_.enqueue(1, two=3)
    assert run_queued() == 1
    result = task_.get_result(enqueued.id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.is_finished is True
    assert result.started_at is not None
    assert result.last_attempted_at is not None
    assert result.finished_at is not None
    assert result.started_at >= result.enqueued_at
    assert result.finished_at >= result.started_at
    assert result.return_value is None
    assert result.task == task_
    assert result.args == [1]
    assert result.kwargs == {"two": 3}
    assert result.attempts == 1
    assert result.worker_ids == [WORKER]
    assert result.errors == []
    assert row(result).state == states.SUCCESS


def test_result() -> None:
    """ImmediateBackendTestCase.test_result (+ _async)."""
    sync_result = default_task_backend.enqueue(t.meaning_of_life, [], {})
    async_result = async_to_sync(default_task_backend.aenqueue)(t.meaning_of_life, [], {})
    run_queued()
    assert t.meaning_of_life.get_result(sync_result.id).return_value == 42
    assert async_to_sync(t.meaning_of_life.aget_result)(async_result.id).return_value == 42


@pytest.mark.parametrize(
    ("task_", "exception", "message"),
    [
        (t.fails_with_value_error, ValueError, "This task failed with ValueError"),
        (t.fails_with_system_exit, SystemExit, "This task failed with SystemExit"),
    ],
    ids=["ValueError", "SystemExit"],
)
def test_catches_exception(task_: Task, exception: type, message: str, caplog: Any) -> None:
    """ImmediateBackendTestCase.test_catches_exception."""
    enqueued = task_.enqueue()
    with caplog.at_level(logging.ERROR, logger="django.tasks"):
        run_queued()
    logged = [
        r.getMessage() + (r.exc_text or "")
        for r in caplog.records
        if r.name == "django.tasks" and r.levelno == logging.ERROR
    ]
    assert len(logged) == 1
    assert enqueued.id in logged[0]
    assert caplog.records[-1].exc_info is not None
    assert message in str(caplog.records[-1].exc_info[1])
    result = task_.get_result(enqueued.id)
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert result.is_finished is True
    assert result.started_at is not None
    assert result.last_attempted_at is not None
    assert result.finished_at >= result.started_at >= result.enqueued_at
    assert result.errors[0].exception_class is exception
    assert result.errors[0].traceback.endswith(f"{exception.__name__}: {message}\n")
    assert result.task == task_
    assert (result.args, result.kwargs) == ([], {})
    r = row(result)
    assert (r.state, r.exc_type) == (states.FAILURE, f"builtins.{exception.__name__}")


def test_keyboard_interrupt_fails_the_task() -> None:
    """Instead of ImmediateBackendTestCase.test_throws_keyboard_interrupt: in a
    worker, a task's own KeyboardInterrupt fails that task and nothing else."""
    enqueued = t.fails_with_keyboard_interrupt.enqueue()
    after = t.meaning_of_life.enqueue()
    run_queued()
    result = t.fails_with_keyboard_interrupt.get_result(enqueued.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is KeyboardInterrupt
    assert t.meaning_of_life.get_result(after.id).return_value == 42


def test_exit_fails_the_task() -> None:
    enqueued = t.calls_exit.enqueue()
    run_queued()
    assert t.calls_exit.get_result(enqueued.id).errors[0].exception_class is SystemExit


def test_complex_exception() -> None:
    """ImmediateBackendTestCase.test_complex_exception."""
    enqueued = t.fails_with_complex_exception.enqueue()
    run_queued()
    result = t.fails_with_complex_exception.get_result(enqueued.id)
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert result._return_value is None
    assert result.finished_at >= result.started_at >= result.enqueued_at
    assert result.errors[0].exception_class is ValueError
    assert 'ValueError(ValueError("nested failure"))' in result.errors[0].traceback


def test_complex_return_value() -> None:
    """ImmediateBackendTestCase.test_complex_return_value."""
    enqueued = t.returns_unserializable.enqueue()
    run_queued()
    result = t.returns_unserializable.get_result(enqueued.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.finished_at >= result.started_at >= result.enqueued_at
    assert result._return_value is None
    assert result.errors[0].exception_class is TypeError
    assert "Unsupported type" in result.errors[0].traceback


def test_task_error_invalid_exception_and_unknown_module() -> None:
    """TaskTestCase.test_task_error_invalid_exception / _unknown_module, on an error
    this backend stored."""
    enqueued = t.fails_with_value_error.enqueue()
    run_queued()
    result = t.fails_with_value_error.get_result(enqueued.id)
    assert len(result.errors) == 1
    object.__setattr__(result.errors[0], "exception_class_path", "subprocess.run")
    with pytest.raises(
        ValueError, match=re.escape("'subprocess.run' does not reference a valid exception.")
    ):
        result.errors[0].exception_class  # noqa: B018
    object.__setattr__(result.errors[0], "exception_class_path", "does.not.exist")
    with pytest.raises(ImportError):
        result.errors[0].exception_class  # noqa: B018


def _django_task_logs(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "django.tasks"]


def test_run_logs(caplog: Any) -> None:
    """ImmediateBackendTestCase.test_enqueue_logs and test_successful_task_no_none_in_logs:
    enqueued (web process), then RUNNING and SUCCESSFUL (where it runs)."""
    with caplog.at_level(logging.DEBUG, logger="django.tasks"):
        result = t.noop.enqueue()
        run_queued()
    logs = _django_task_logs(caplog)
    assert len(logs) == 3
    assert "enqueued" in logs[0]
    assert "state=RUNNING" in logs[1]
    assert "state=SUCCESSFUL" in logs[2]
    assert all(result.id in line for line in logs)
    assert not any("None" in line for line in logs)


def test_failed_logs(caplog: Any) -> None:
    """ImmediateBackendTestCase.test_failed_logs."""
    with caplog.at_level(logging.DEBUG, logger="django.tasks"):
        result = t.fails_with_value_error.enqueue()
        run_queued()
    logs = _django_task_logs(caplog)
    assert len(logs) == 3
    assert "state=RUNNING" in logs[1] and result.id in logs[1]
    assert "state=FAILED" in logs[2] and result.id in logs[2]


def test_takes_context() -> None:
    """ImmediateBackendTestCase.test_takes_context."""
    enqueued = t.own_id.enqueue()
    run_queued()
    assert t.own_id.get_result(enqueued.id).return_value == enqueued.id


def test_context() -> None:
    """ImmediateBackendTestCase.test_context: TaskContext.attempt is 1 on the first run."""
    enqueued = t.context_attempt.enqueue(1)
    run_queued()
    result = t.context_attempt.get_result(enqueued.id)
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert result.return_value == 1


def test_started_and_finished_signals() -> None:
    seen: list[tuple[str, Any, str, int]] = []

    def on(name: str) -> Any:
        def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append((name, sender, task_result.status, task_result.attempts))

        return receiver

    started, finished = on("started"), on("finished")
    task_started.connect(started)
    task_finished.connect(finished)
    try:
        t.noop.enqueue()
        t.fails_with_value_error.enqueue()
        run_queued()
    finally:
        task_started.disconnect(started)
        task_finished.disconnect(finished)
    assert sorted(seen) == sorted(
        [
            ("started", DatabaseBackend, TaskResultStatus.RUNNING, 1),
            ("finished", DatabaseBackend, TaskResultStatus.SUCCESSFUL, 1),
            ("started", DatabaseBackend, TaskResultStatus.RUNNING, 1),
            ("finished", DatabaseBackend, TaskResultStatus.FAILED, 1),
        ]
    )


def test_a_failing_started_receiver_fails_the_task() -> None:
    def receiver(**kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    task_started.connect(receiver)
    try:
        enqueued = t.meaning_of_life.enqueue()
        run_queued()
    finally:
        task_started.disconnect(receiver)
    result = t.meaning_of_life.get_result(enqueued.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is RuntimeError


def test_a_failing_finished_receiver_does_not_change_the_outcome() -> None:
    def receiver(**kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    task_finished.connect(receiver)
    try:
        enqueued = t.meaning_of_life.enqueue()
        run_queued()
    finally:
        task_finished.disconnect(receiver)
    assert t.meaning_of_life.get_result(enqueued.id).return_value == 42


def test_async_tasks_run_with_the_orm_and_context() -> None:
    added = t.async_add.enqueue(2, 3)
    counted = t.async_count_rows.enqueue()
    context = t.async_context.enqueue()
    run_queued()
    assert t.async_add.get_result(added.id).return_value == 5
    assert t.async_count_rows.get_result(counted.id).return_value == 3
    assert t.async_context.get_result(context.id).return_value == [1, context.id]


def test_run_after_is_honoured() -> None:
    later = t.noop.using(run_after=timezone.now() + dt.timedelta(hours=1)).enqueue()
    now = t.noop.using(run_after=timezone.now() - dt.timedelta(seconds=1)).enqueue()
    assert run_queued() == 1
    assert t.noop.get_result(now.id).status == TaskResultStatus.SUCCESSFUL
    assert t.noop.get_result(later.id).status == TaskResultStatus.READY


def test_priority_orders_the_runs() -> None:
    order: list[int] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        order.append(task_result.task.priority)

    for p in (-10, 50, 0, 100, -100):
        t.noop.using(priority=p).enqueue()
    task_started.connect(receiver)
    try:
        run_queued()
    finally:
        task_started.disconnect(receiver)
    assert order == [100, 50, 0, -10, -100]


def test_both_kinds_share_the_table_and_the_worker(temp_task: Any) -> None:
    native = temp_task(lambda x: x * 2)
    r1 = native.delay(21)
    r2 = t.add.enqueue(40, 2)
    assert run_queued() == 2
    assert r1.get(timeout=1) == 42
    assert t.add.get_result(r2.id).return_value == 42


# -- status mapping --------------------------------------------------------------------


def test_status_mapping_while_waiting_running_and_claimed() -> None:
    enqueued = t.noop.enqueue()
    now = timezone.now()
    [claimed] = queue.claim(WORKER, ["default"], 1, now, 60)
    assert t.noop.get_result(enqueued.id).status == TaskResultStatus.READY  # RECEIVED
    queue.start(WORKER, [claimed], now)
    running = t.noop.get_result(enqueued.id)
    assert running.status == TaskResultStatus.RUNNING  # STARTED
    assert running.worker_ids == [WORKER]
    assert running.attempts == 1
    assert running.started_at == running.last_attempted_at == row(enqueued).started_at
    assert running.finished_at is None


def test_revoked_is_failed_with_the_reason() -> None:
    enqueued = t.noop.enqueue()
    assert queue.revoke([enqueued.id], "cancelled by a test", timezone.now()) == [enqueued.id]
    result = t.noop.get_result(enqueued.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.worker_ids == []
    [error] = result.errors
    assert error.exception_class_path == "djtasks.exceptions.TaskRevokedError"
    assert "cancelled by a test" in error.traceback
    assert result.finished_at is not None


def test_lost_worker_is_failed_with_worker_lost_error() -> None:
    enqueued = t.noop.enqueue()
    now = timezone.now()
    claimed = queue.claim(WORKER, ["default"], 1, now, 0.001)
    queue.start(WORKER, claimed, now)
    queue.rescue_expired(now + dt.timedelta(seconds=5))
    result = t.noop.get_result(enqueued.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.worker_ids == [WORKER]
    assert result.errors[0].exception_class_path == "djtasks.exceptions.WorkerLostError"
    assert WORKER in result.errors[0].traceback


# -- retries (OPTIONS) -----------------------------------------------------------------


def test_retries_until_success_keep_every_error_and_worker() -> None:
    enqueued = t.flaky.using(queue_name="retrying").enqueue(3)
    runs = 0
    workers = ["w1@test", "w2@test", "w3@test"]
    for worker in workers:
        # The backoff (50 ms, then 100 ms) has to pass before the next run.
        deadline = timezone.now() + dt.timedelta(seconds=5)
        while not run_queued(("retrying",), worker) and timezone.now() < deadline:
            pass
        runs += 1
        waiting = t.flaky.get_result(enqueued.id)
        if runs < 3:
            assert waiting.status == TaskResultStatus.READY
            assert waiting.attempts == runs
            assert len(waiting.errors) == runs
            assert row(enqueued).state == states.RETRY
    result = t.flaky.get_result(enqueued.id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value["attempt"] == 3
    assert result.worker_ids == workers
    assert result.attempts == 3
    assert [e.exception_class for e in result.errors] == [ValueError, ValueError]
    assert "attempt 1 failed" in result.errors[0].traceback
    assert "attempt 2 failed" in result.errors[1].traceback
    assert result.started_at < result.last_attempted_at < result.finished_at
    assert row(enqueued).retries == 2


def test_retries_stop_at_max_attempts(settings: Any) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "djtasks.backends.DatabaseBackend",
            "OPTIONS": {"max_attempts": 2, "backoff": 0},
        }
    }
    enqueued = t.flaky.enqueue(5)
    assert run_queued() == 2
    result = t.flaky.get_result(enqueued.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 2
    assert len(result.errors) == 2


def test_retry_on_limits_what_is_retried(settings: Any) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "djtasks.backends.DatabaseBackend",
            "OPTIONS": {"max_attempts": 3, "backoff": 0, "retry_on": ["builtins.KeyError"]},
        }
    }
    enqueued = t.fails_with_value_error.enqueue()
    assert run_queued() == 1
    result = t.fails_with_value_error.get_result(enqueued.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1


def test_context_attempt_counts_runs(settings: Any) -> None:
    """TaskContext.attempt goes up with each run (here the 2nd run expects 2)."""
    settings.TASKS = {
        "default": {
            "BACKEND": "djtasks.backends.DatabaseBackend",
            "OPTIONS": {"max_attempts": 2, "backoff": 0},
        }
    }
    enqueued = t.context_attempt.enqueue(2)
    assert run_queued() == 2
    result = t.context_attempt.get_result(enqueued.id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 2
    assert result.attempts == 2


# -- loading tasks named by rows (security) ------------------------------------------------


def failure_of(task_id: str) -> tuple[str, str, str]:
    r = TaskRecord.objects.get(pk=task_id)
    return r.state, r.exc_type, r.exc_message


@pytest.mark.parametrize(
    "name", ["os.system", "subprocess.check_output", "builtins.exec", "posix.system", "sys.exit"]
)
def test_rows_naming_stdlib_functions_never_run(name: str, tmp_path: Any) -> None:
    target = tmp_path / "must-not-exist"
    arg = f"touch {target}" if name == "os.system" else ["touch", str(target)]
    task_id = raw_row(name, json.dumps([[arg], {}]))
    assert run_queued() == 1
    state, exc_type, message = failure_of(task_id)
    assert state == states.FAILURE
    assert exc_type == "djtasks.backends.loading.TaskNotLoadable"
    assert "is not part of an installed app nor listed in DJTASKS_IMPORTS" in message
    assert not target.exists()


def test_rows_naming_a_plain_function_of_an_allowed_module_never_run() -> None:
    task_id = raw_row("tests.django_tasks_app.tasks.not_a_task")
    run_queued()
    assert failure_of(task_id) == (
        states.FAILURE,
        "djtasks.backends.loading.TaskNotLoadable",
        "'tests.django_tasks_app.tasks.not_a_task' is a function, not a django.tasks Task",
    )


def test_rows_naming_a_task_under_another_name_never_run() -> None:
    task_id = raw_row("tests.django_tasks_app.tasks.alias_of_add", "[[1, 2], {}]")
    run_queued()
    state, _, message = failure_of(task_id)
    assert state == states.FAILURE
    assert "is the task 'tests.django_tasks_app.tasks.add' under another name" in message


def test_rows_naming_a_class_never_run() -> None:
    task_id = raw_row("tests.django_tasks_app.tasks.TaskContext")
    run_queued()
    state, _, message = failure_of(task_id)
    assert state == states.FAILURE
    assert "is a type, not a django.tasks Task" in message


def test_modules_outside_the_rules_are_not_even_imported() -> None:
    sys.modules.pop("tests.django_tasks_app.unlisted", None)
    task_id = raw_row("tests.django_tasks_app.unlisted.unlisted_task")
    run_queued()
    assert failure_of(task_id)[0] == states.FAILURE
    assert "tests.django_tasks_app.unlisted" not in sys.modules


def test_modules_inside_the_rules_are_imported_on_demand() -> None:
    sys.modules.pop("tests.django_tasks_app.lazy_tasks", None)
    task_id = raw_row("tests.django_tasks_app.lazy_tasks.lazy_double", "[[21], {}]")
    run_queued()
    r = TaskRecord.objects.get(pk=task_id)
    assert r.state == states.SUCCESS, r.exc_message
    assert "tests.django_tasks_app.lazy_tasks" in sys.modules


def test_modules_of_installed_apps_are_allowed(settings: Any) -> None:
    settings.DJTASKS_IMPORTS = []
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.django_tasks_app"]
    task_id = raw_row("tests.django_tasks_app.tasks.add", "[[1, 2], {}]")
    run_queued()
    assert TaskRecord.objects.get(pk=task_id).state == states.SUCCESS


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("default", "header names no backend"),
        ({}, "header names no backend"),
        ({"backend": "nope"}, "TASKS['nope']: The connection 'nope' doesn't exist."),
        (
            {"backend": "immediate"},
            "TASKS['immediate'] is ImmediateBackend, not djtasks.backends.DatabaseBackend",
        ),
    ],
)
def test_rows_with_a_bad_marker_fail(header: Any, expected: str) -> None:
    task_id = raw_row("tests.django_tasks_app.tasks.noop", header=header)
    run_queued()
    state, _, message = failure_of(task_id)
    assert state == states.FAILURE
    assert expected in message


@pytest.mark.parametrize(
    ("payload", "content_type", "exc_type", "expected"),
    [
        ("{not json", "application/json", "DecodeError", "payload does not decode as json"),
        ('{"a": 1}', "application/json", "DecodeError", "payload is not [args, kwargs]"),
        (
            '[[{"__type__": "datetime", "__value__": "2020-01-01T00:00:00"}], {}]',
            "application/json",
            "DecodeError",
            "payload: Unsupported type",
        ),
        (
            "gASVBQAAAAAAAAB9lC4=",
            "application/x-python-serialize",
            "ContentDisallowed",
            "content type 'application/x-python-serialize' is not accepted",
        ),
    ],
)
def test_rows_with_a_bad_payload_fail(
    payload: str, content_type: str, exc_type: str, expected: str
) -> None:
    task_id = raw_row("tests.django_tasks_app.tasks.noop", payload, content_type=content_type)
    run_queued()
    state, stored_type, message = failure_of(task_id)
    assert (state, stored_type) == (states.FAILURE, f"djtasks.exceptions.{exc_type}")
    assert expected in message


def test_signed_messages(settings: Any) -> None:
    """With DJTASKS_SIGN_MESSAGES, django.tasks rows are signed and verified like the rest."""
    settings.DJTASKS_SIGN_MESSAGES = True
    enqueued = t.add.enqueue(1, 2)
    signed = row(enqueued)
    assert signed.content_type == "application/json; hmac=sha256"
    unsigned = raw_row("tests.django_tasks_app.tasks.add", "[[1, 2], {}]")
    moved = raw_row(
        "tests.django_tasks_app.tasks.meaning_of_life",
        signed.payload,
        content_type=signed.content_type,
    )
    assert t.add.get_result(enqueued.id) == enqueued
    run_queued()
    result = t.add.get_result(enqueued.id)
    assert result.return_value == 3
    assert row(result).result_content_type == "application/json; hmac=sha256"
    for task_id in (unsigned, moved):
        state, exc_type, _ = failure_of(task_id)
        assert (state, exc_type) == (states.FAILURE, "djtasks.serialization.BadSignature")


def test_payload_limit_applies_at_the_call(settings: Any) -> None:
    settings.DJTASKS_MAX_PAYLOAD_BYTES = 1000
    with pytest.raises(EncodeError, match="over the limit of 1,000 bytes"):
        t.noop.enqueue("x" * 2000)
    assert not TaskRecord.objects.exists()


def test_get_result_of_a_forged_payload() -> None:
    task_id = raw_row(
        "tests.django_tasks_app.tasks.noop",
        '[[{"__type__": "uuid", "__value__": "12345678-1234-5678-1234-567812345678"}], {}]',
    )
    with pytest.raises(InvalidTask, match="payload: Unsupported type"):
        default_task_backend.get_result(task_id)


def test_get_result_of_a_row_naming_no_task() -> None:
    task_id = raw_row("os.system")
    with pytest.raises(InvalidTask, match="is not part of an installed app"):
        default_task_backend.get_result(task_id)
