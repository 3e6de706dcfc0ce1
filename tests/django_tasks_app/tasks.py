"""django.tasks tasks for the backend tests (the kinds of task Django's own
``tests/tasks/`` exercise, plus retries, limits, async ORM and signals)."""

import asyncio
import os
import time

from django.tasks import TaskContext, task

from djtasks.exceptions import SoftTimeLimitExceeded
from djtasks.models import TaskRecord

# Decorated here, at import, under whatever TASKS is then in force: the
# test settings' default (Django's ImmediateBackend) in-process, the
# DatabaseBackend in worker subprocesses.


@task()
def noop(*args, **kwargs):
    return None


@task
def noop_bare(*args, **kwargs):
    return None


@task()
async def noop_async(*args, **kwargs):
    return None


@task()
def meaning_of_life():
    return 42


@task()
def add(a, b):
    return a + b


@task()
async def async_add(a, b):
    await asyncio.sleep(0.01)
    return a + b


@task()
async def async_count_rows():
    # The async ORM, inside a task run by the worker.
    return await TaskRecord.objects.acount()


@task()
def fails_with_value_error():
    raise ValueError("This task failed with ValueError")


@task()
def fails_with_system_exit():
    raise SystemExit("This task failed with SystemExit")


@task()
def fails_with_keyboard_interrupt():
    raise KeyboardInterrupt("This task failed with KeyboardInterrupt")


@task()
def fails_with_complex_exception():
    raise ValueError(ValueError("nested failure"))


@task()
def returns_unserializable():
    return lambda: True


@task()
def calls_exit():
    exit(1)


@task()
def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


@task()
def stubborn_sleep(seconds):
    """Ignores its soft time limit, so only the hard one can stop it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            pass
    return seconds


@task()
async def async_sleep_for(seconds):
    await asyncio.sleep(seconds)
    return seconds


@task(takes_context=True)
def own_id(context):
    return context.task_result.id


@task(takes_context=True)
def context_attempt(context, expected):
    assert isinstance(context, TaskContext)
    assert context.attempt == expected, (context.attempt, expected)
    return context.attempt


@task(takes_context=True)
def flaky(context, succeed_on):
    """Fails until attempt ``succeed_on``; returns the attempt and the worker pid."""
    if context.attempt < succeed_on:
        raise ValueError(f"attempt {context.attempt} failed")
    return {"attempt": context.attempt, "pid": os.getpid()}


@task(takes_context=True)
async def async_context(context):
    await asyncio.sleep(0)
    return [context.attempt, context.task_result.id]


def not_a_task():
    return "plain functions never run from a row"


#: The same task under a second name: rows must use the task's own name.
alias_of_add = add
