"""Task.apply_async() and .delay(): a call that cannot work fails at the call site.

These run without a database (pytest-django refuses queries here), so each
error is raised before anything is written. ``tests/integration/test_task.py``
runs the same :data:`BAD_CALLS` on a real database and checks that no row
was written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from djtasks.exceptions import EncodeError
from tests.testapp import tasks

ADD = "'tests.testapp.tasks.add'"


def _later() -> dt.datetime:
    return timezone.now() + dt.timedelta(minutes=5)


#: (call, exception type, regex its message must match)
BAD_CALLS = [
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), eta=dt.datetime.now()),
        ValueError,
        r"eta must be timezone-aware \(got naive",
        id="naive-eta",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), eta="tomorrow"),
        TypeError,
        r"eta must be a datetime, not str",
        id="eta-not-datetime",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), countdown=-1),
        ValueError,
        r"countdown must be a number of seconds >= 0, not -1",
        id="negative-countdown",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), countdown="5"),
        ValueError,
        r"countdown must be a number of seconds >= 0, not '5'",
        id="countdown-str",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), countdown=5, eta=_later()),
        ValueError,
        r"give countdown or eta, not both",
        id="countdown-and-eta",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), expires=-1),
        ValueError,
        r"expires must be a number of seconds >= 0",
        id="negative-expires",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), expires=dt.datetime(2030, 1, 1)),
        ValueError,
        r"expires must be timezone-aware",
        id="naive-expires",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), priority=101),
        ValueError,
        r"priority must be from -100 to 100 \(higher runs first\), not 101",
        id="priority-too-high",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), priority=-101),
        ValueError,
        r"priority must be from -100 to 100",
        id="priority-too-low",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), priority="9"),
        TypeError,
        r"priority must be an int from -100 to 100, not str",
        id="priority-str",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), priority=1.5),
        TypeError,
        r"priority must be an int .*, not float",
        id="priority-float",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), priority=True),
        TypeError,
        r"priority must be an int .*, not bool",
        id="priority-bool",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), task_id="not-a-uuid"),
        ValueError,
        r"task_id must be a UUID, not 'not-a-uuid'",
        id="bad-task-id",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), queue=""),
        ValueError,
        r"queue must be a non-empty string",
        id="empty-queue",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), queue="q" * 101),
        ValueError,
        r"at most 100 characters",
        id="long-queue",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), headers=["x"]),
        TypeError,
        r"headers must be a dict, not list",
        id="headers-not-dict",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1, 2), serializer="no-such-format"),
        ValueError,
        r"unknown serializer 'no-such-format'",
        id="unknown-serializer",
    ),
    pytest.param(
        lambda: tasks.add.apply_async("12"),
        TypeError,
        rf"args of task {ADD} must be a list or tuple, not str",
        id="args-str",
    ),
    pytest.param(
        lambda: tasks.add.apply_async({"x": 1, "y": 2}),
        TypeError,
        r"args of task .* must be a list or tuple, not dict",
        id="args-dict",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1,), [2]),
        TypeError,
        rf"kwargs of task {ADD} must be a dict, not list",
        id="kwargs-list",
    ),
    pytest.param(
        lambda: tasks.add.apply_async((1,)),
        TypeError,
        rf"bad arguments for task {ADD}: missing a required argument: 'y'",
        id="too-few-args",
    ),
    pytest.param(
        lambda: tasks.add.delay(1, 2, 3),
        TypeError,
        rf"bad arguments for task {ADD}: too many positional arguments",
        id="too-many-args",
    ),
    pytest.param(
        lambda: tasks.add.delay(1, 2, z=3),
        TypeError,
        rf"bad arguments for task {ADD}: got an unexpected keyword argument 'z'",
        id="unexpected-kwarg",
    ),
    pytest.param(
        lambda: tasks.record.delay(1, 2),
        TypeError,
        r"bad arguments for task 'tests.testapp.tasks.record'",
        id="bound-task-arity",
    ),
    pytest.param(
        lambda: tasks.echo.delay(object()),
        EncodeError,
        r"positional argument 0 of task 'tests.testapp.tasks.echo' cannot be encoded",
        id="unencodable-arg",
    ),
    pytest.param(
        lambda: tasks.echo.delay(value={1: object()}),
        EncodeError,
        r"keyword argument 'value' of task 'tests.testapp.tasks.echo'",
        id="unencodable-kwarg",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD_CALLS)
def test_bad_call_is_refused_before_any_query(
    call: Callable[[], Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        call()


@override_settings(DJTASKS_TASK_ROUTES={"tests.testapp.tasks.add": {"priority": 500}})
def test_route_with_bad_priority_is_refused_naming_the_task() -> None:
    with pytest.raises(
        ValueError,
        match=r"routed priority of tests.testapp.tasks.add must be "
        r"from -100 to 100",
    ):
        tasks.add.delay(1, 2)


def test_the_task_function_itself_runs_directly() -> None:
    assert tasks.add(2, 3) == 5
    assert tasks.renamed() == "renamed"


def test_apply_checks_arguments_too() -> None:
    with pytest.raises(TypeError, match="missing a required argument"):
        tasks.add.apply((1,))
    with pytest.raises(EncodeError, match="positional argument 0"):
        tasks.echo.apply((object(),))
