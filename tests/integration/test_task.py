"""task.py on a real database: what apply_async() writes, what it refuses, eager runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from djtasks import EagerResult, serialization, states
from djtasks.exceptions import MaxRetriesExceededError
from djtasks.models import TaskRecord
from tests.testapp import tasks
from tests.testapp.models import Execution
from tests.testapp.tasks import BoomError, FlakyError
from tests.unit.test_calling import BAD_CALLS

pytestmark = pytest.mark.django_db


def stored(result: Any) -> TaskRecord:
    return TaskRecord.objects.get(pk=result.id)


@pytest.mark.parametrize(("call", "error", "match"), BAD_CALLS)
def test_a_refused_call_writes_no_row(call: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
    assert TaskRecord.objects.count() == 0


def test_delay_writes_a_pending_row_with_encoded_arguments() -> None:
    before = timezone.now()
    result = tasks.echo.delay({"when": dt.date(2024, 5, 1), "ids": {uuid.UUID(int=1)}})
    r = stored(result)
    assert (r.state, r.name, r.queue, r.priority, r.retries, r.attempt) == (
        states.PENDING,
        "tests.testapp.tasks.echo",
        "default",
        0,
        0,
        0,
    )
    assert serialization.decode_arguments(r.content_type, r.payload) == (
        [{"when": dt.date(2024, 5, 1), "ids": {uuid.UUID(int=1)}}],
        {},
    )
    assert before <= r.eta <= timezone.now()
    assert r.expires is None
    assert result.state == states.PENDING
    assert result.task_name == "tests.testapp.tasks.echo"


def test_apply_async_stores_every_option() -> None:
    tid = uuid.uuid4()
    eta = timezone.now() + dt.timedelta(hours=1)
    result = tasks.add.apply_async(
        (1,),
        {"y": 2},
        eta=eta,
        expires=dt.timedelta(hours=2),
        queue="hipri",
        priority=-7,
        task_id=str(tid),
        headers={"trace": "abc"},
        ignore_result=True,
        acks_late=True,
    )
    assert result.id == str(tid)
    r = stored(result)
    assert (r.queue, r.priority, r.eta, r.headers, r.ignore_result, r.acks_late) == (
        "hipri",
        -7,
        eta,
        {"trace": "abc"},
        True,
        True,
    )
    assert r.expires is not None
    assert dt.timedelta(minutes=119) < r.expires - r.created_at <= dt.timedelta(hours=2)
    assert serialization.decode_arguments(r.content_type, r.payload) == ([1], {"y": 2})


def test_countdown_sets_the_eta() -> None:
    before = timezone.now()
    r = stored(tasks.add.apply_async((1, 2), countdown=30))
    assert before + dt.timedelta(seconds=30) <= r.eta <= timezone.now() + dt.timedelta(seconds=30)


def test_expires_in_seconds_or_as_a_datetime() -> None:
    before = timezone.now()
    assert stored(tasks.add.apply_async((1, 2), expires=10)).expires >= before + dt.timedelta(
        seconds=10
    )
    when = timezone.now() + dt.timedelta(days=1)
    assert stored(tasks.add.apply_async((1, 2), expires=when)).expires == when


def test_routing_decides_queue_and_priority_of_the_row() -> None:
    assert (stored(tasks.routed.delay()).queue, stored(tasks.routed.delay()).priority) == (
        "lowpri",
        -5,
    )
    routes = {"tests.testapp.tasks.rout*": {"queue": "globbed", "priority": 9}}
    with override_settings(DJTASKS_TASK_ROUTES=routes):
        r = stored(tasks.routed.delay())
        assert (r.queue, r.priority) == ("globbed", 9)
        r = stored(tasks.routed.apply_async(queue="called", priority=1))
        assert (r.queue, r.priority) == ("called", 1)


def test_a_task_id_cannot_be_used_twice() -> None:
    tid = uuid.uuid4()
    tasks.add.apply_async((1, 2), task_id=tid)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        tasks.add.apply_async((1, 2), task_id=tid)


# -- eager -------------------------------------------------------------------------


@override_settings(DJTASKS_ALWAYS_EAGER=True)
def test_always_eager_runs_in_process_and_writes_no_row() -> None:
    result = tasks.add.delay(2, 3)
    assert isinstance(result, EagerResult)
    assert (result.state, result.get(), result.result) == (states.SUCCESS, 5, 5)
    assert result.ready()
    assert result.successful()
    assert TaskRecord.objects.count() == 0


@override_settings(DJTASKS_ALWAYS_EAGER=True)
def test_always_eager_still_validates_the_call() -> None:
    with pytest.raises(TypeError, match="missing a required argument"):
        tasks.add.delay(2)
    with pytest.raises(ValueError, match="timezone-aware"):
        tasks.add.apply_async((1, 2), eta=dt.datetime(2030, 1, 1))


@override_settings(DJTASKS_ALWAYS_EAGER=True)
def test_always_eager_propagates_exceptions_by_default() -> None:
    with pytest.raises(BoomError, match="eager"):
        tasks.fail.delay("eager")


@override_settings(DJTASKS_ALWAYS_EAGER=True, DJTASKS_EAGER_PROPAGATES=False)
def test_always_eager_can_keep_the_exception_in_the_result() -> None:
    result = tasks.fail.delay("kept")
    assert result.state == states.FAILURE
    assert result.failed()
    assert isinstance(result.result, BoomError)
    assert "raise BoomError(message)" in result.traceback
    with pytest.raises(BoomError):
        result.get()


def test_apply_runs_now_with_retries_and_keeps_the_id() -> None:
    result = tasks.retry_until.apply((2,), task_id="00000000-0000-0000-0000-00000000000a")
    assert (result.state, result.result, result.retries) == (states.SUCCESS, 2, 2)
    assert result.id == "00000000-0000-0000-0000-00000000000a"
    runs = Execution.objects.filter(task_id=result.id)
    assert runs.count() == 3  # the first run and two retries
    assert TaskRecord.objects.count() == 0


def test_apply_ends_in_max_retries_exceeded() -> None:
    result = tasks.retry_forever.apply()
    assert result.state == states.FAILURE
    assert isinstance(result.result, MaxRetriesExceededError)
    assert "max_retries=2 reached" in str(result.result)
    assert result.retries == 2
    assert Execution.objects.filter(task_id=result.id).count() == 3


def test_apply_autoretries_then_gives_up_with_the_original_error() -> None:
    ok = tasks.flaky.apply((2,))
    assert (ok.state, ok.result, ok.retries) == (states.SUCCESS, 2, 2)
    gave_up = tasks.flaky.apply((5,))
    assert gave_up.state == states.FAILURE
    assert isinstance(gave_up.result, FlakyError)
    assert gave_up.retries == 2


def test_apply_keeps_the_exception_and_get_reraises_it() -> None:
    result = tasks.fail.apply(("in process",))
    assert result.state == states.FAILURE
    assert "BoomError: in process" in result.traceback
    with pytest.raises(BoomError, match="in process"):
        result.get()
    assert isinstance(result.get(propagate=False), BoomError)


def test_apply_of_a_bound_task_sees_its_request() -> None:
    result = tasks.record.apply(("x",))
    assert result.get() == "x"
    [run] = Execution.objects.all()
    assert (run.task_id, run.name) == (result.id, "tests.testapp.tasks.record")
