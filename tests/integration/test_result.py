"""result.py on a real database: AsyncResult reads a task's row."""

from __future__ import annotations

import datetime as dt
import decimal
import sys
import threading
import time
from typing import Any

import pytest
from django.utils import timezone

import djtasks.exceptions
from djtasks import AsyncResult, states
from djtasks.exceptions import TaskError, TaskRevokedError
from djtasks.ids import uuid7
from djtasks.models import TaskRecord
from tests.support import in_other_connection
from tests.testapp.tasks import BoomError

pytestmark = pytest.mark.django_db

DONE = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def finished(state: str = states.SUCCESS, **fields: Any) -> AsyncResult:
    """A row that has finished with ``state``; return its AsyncResult."""
    fields.setdefault("done_at", DONE)
    record = TaskRecord.objects.create(
        name="tests.testapp.tasks.add", payload="[[], {}]", state=state, **fields
    )
    return AsyncResult(record.id)


def test_an_unknown_id_is_pending() -> None:
    result = AsyncResult(uuid7())
    assert (result.state, result.status, result.result, result.info) == (
        states.PENDING,
        states.PENDING,
        None,
        None,
    )
    assert (result.traceback, result.date_done) == (None, None)
    assert not result.ready()
    assert not result.successful()
    assert not result.failed()


def test_a_successful_task() -> None:
    result = finished(
        result='{"total": {"__type__": "decimal", "__value__": "9.50"}}',
        result_content_type="application/json",
        runtime=0.25,
        retries=1,
    )
    assert result.state == states.SUCCESS
    assert result.result == result.info == {"total": decimal.Decimal("9.50")}
    assert result.get(timeout=1) == result.result
    assert (result.date_done, result.traceback, result.runtime, result.retries) == (
        DONE,
        None,
        0.25,
        1,
    )
    assert result.ready()
    assert result.successful()
    assert not result.failed()
    assert result.name == "tests.testapp.tasks.add"


def test_a_failure_reraises_the_original_exception_type() -> None:
    result = finished(
        states.FAILURE,
        exc_type="tests.testapp.tasks.BoomError",
        exc_message="it broke",
        traceback="Traceback (most recent call last):\n...\nBoomError: it broke\n",
    )
    assert result.failed()
    assert result.ready()
    assert not result.successful()
    assert result.traceback.endswith("BoomError: it broke\n")
    with pytest.raises(BoomError, match=r"^it broke$") as info:
        result.get(timeout=1)
    assert info.value.remote_traceback == result.traceback  # type: ignore[attr-defined]
    assert isinstance(result.result, BoomError)
    assert isinstance(result.info, BoomError)


def test_a_failure_with_a_builtin_exception() -> None:
    result = finished(states.FAILURE, exc_type="builtins.KeyError", exc_message="'missing'")
    with pytest.raises(KeyError):
        result.get()


def test_propagate_false_returns_the_exception() -> None:
    result = finished(states.FAILURE, exc_type="builtins.ValueError", exc_message="bad value")
    value = result.get(timeout=1, propagate=False)
    assert isinstance(value, ValueError)
    assert str(value) == "bad value"


@pytest.mark.parametrize(
    "exc_type",
    [
        "some_module_nobody_imported.CustomError",  # module never imported here: not imported now
        "tests.testapp.tasks.NoSuchError",  # module imported, class gone
        "tests.testapp.tasks.add",  # not an exception class
        "builtins.UnicodeDecodeError",  # cannot be built from a message alone
    ],
)
def test_an_exception_that_cannot_be_rebuilt_is_a_task_error(exc_type: str) -> None:
    result = finished(
        states.FAILURE, exc_type=exc_type, exc_message="remote words", traceback="remote traceback"
    )
    with pytest.raises(TaskError) as info:
        result.get(timeout=1)
    error = info.value
    assert (error.remote_type, error.remote_message, error.remote_traceback) == (
        exc_type,
        "remote words",
        "remote traceback",
    )
    assert str(error) == f"{exc_type}: remote words"
    assert "some_module_nobody_imported" not in sys.modules


def test_a_revoked_task_raises_task_revoked_error() -> None:
    result = finished(
        states.REVOKED,
        exc_type="djtasks.exceptions.TaskRevokedError",
        exc_message="expired before it could start",
    )
    assert result.ready()
    assert not result.failed()
    with pytest.raises(TaskRevokedError, match="expired before it could start"):
        result.get(timeout=1)


def test_get_times_out_with_djtasks_timeout_error() -> None:
    record = TaskRecord.objects.create(name="t", payload="[[], {}]")
    started = time.monotonic()
    with pytest.raises(
        djtasks.exceptions.TimeoutError,
        match=rf"task {record.id} did not finish within 0.2s \(state PENDING\)",
    ):
        AsyncResult(record.id).get(timeout=0.2, interval=0.05)
    assert 0.2 <= time.monotonic() - started < 5
    # Celery users catch the builtin too.
    assert issubclass(djtasks.exceptions.TimeoutError, TimeoutError)


@pytest.mark.django_db(transaction=True)
def test_get_polls_until_the_row_finishes() -> None:
    record = TaskRecord.objects.create(name="t", payload="[[], {}]", state=states.STARTED)

    def finish_later() -> None:
        time.sleep(0.3)
        TaskRecord.objects.filter(pk=record.id).update(
            state=states.SUCCESS,
            result="42",
            result_content_type="application/json",
            done_at=timezone.now(),
        )

    other = threading.Thread(target=lambda: in_other_connection(finish_later))
    other.start()
    started = time.monotonic()
    try:
        assert AsyncResult(record.id).get(timeout=10, interval=0.02) == 42
    finally:
        other.join()
    assert time.monotonic() - started >= 0.3


def test_progress_state_and_meta_while_running() -> None:
    record = TaskRecord.objects.create(
        name="t",
        payload="[[], {}]",
        state=states.STARTED,
        custom_state="PROGRESS",
        result='{"done": 3}',
        result_content_type="application/json",
    )
    result = AsyncResult(record.id)
    assert (result.state, result.info) == ("PROGRESS", {"done": 3})
    assert not result.ready()


def test_forget_deletes_a_finished_task() -> None:
    result = finished(result="1", result_content_type="application/json")
    result.forget()
    assert not TaskRecord.objects.filter(pk=result.id).exists()
    assert result.state == states.PENDING
    assert result.result is None


def test_forget_of_an_unfinished_task_drops_its_result_when_it_ends() -> None:
    record = TaskRecord.objects.create(name="t", payload="[[], {}]")
    AsyncResult(record.id).forget()
    record.refresh_from_db()
    assert record.ignore_result is True
    assert record.state == states.PENDING


def test_revoke_of_a_pending_task() -> None:
    record = TaskRecord.objects.create(name="t", payload="[[], {}]")
    result = AsyncResult(record.id)
    assert result.revoke() is True
    assert result.state == states.REVOKED
    assert isinstance(result.result, TaskRevokedError)
    assert result.revoke() is False


def test_revoke_of_a_running_task_does_nothing() -> None:
    record = TaskRecord.objects.create(name="t", payload="[[], {}]", state=states.STARTED)
    assert AsyncResult(record.id).revoke() is False
    record.refresh_from_db()
    assert record.state == states.STARTED


def test_results_compare_by_id() -> None:
    tid = uuid7()
    assert AsyncResult(tid) == AsyncResult(str(tid)) == str(tid)
    assert len({AsyncResult(tid), AsyncResult(str(tid))}) == 1
    assert str(AsyncResult(tid)) == str(tid)
