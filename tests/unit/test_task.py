"""task.py and registry.py: declaring tasks, their options, names and retries arithmetic."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from djtasks import Task, shared_task, task
from djtasks.exceptions import AlreadyRegistered, ImproperlyConfiguredTask, NotRegistered
from djtasks.registry import tasks as registry
from djtasks.task import backoff_countdown
from tests.testapp import tasks


def fn(x: int = 0) -> int:
    return x


# -- options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"queue": ""}, ValueError, r"queue must be a non-empty string"),
        ({"queue": 5}, ValueError, r"queue must be a non-empty string .* not 5"),
        ({"priority": 101}, ValueError, r"priority must be from -100 to 100"),
        ({"priority": "high"}, TypeError, r"priority must be an int"),
        ({"priority": False}, TypeError, r"priority must be an int .* not bool"),
        ({"max_retries": -1}, ImproperlyConfiguredTask, r"max_retries must be an int >= 0 or None"),
        ({"max_retries": 2.5}, ImproperlyConfiguredTask, r"max_retries must be an int"),
        ({"max_retries": True}, ImproperlyConfiguredTask, r"max_retries must be an int"),
        (
            {"default_retry_delay": -1},
            ValueError,
            r"default_retry_delay must be a number of seconds",
        ),
        ({"default_retry_delay": None}, ValueError, r"default_retry_delay must be a number"),
        ({"autoretry_for": (int,)}, ImproperlyConfiguredTask, r"autoretry_for must be exception"),
        ({"autoretry_for": ("ValueError",)}, ImproperlyConfiguredTask, r"autoretry_for must be"),
        ({"retry_backoff_max": "10"}, ValueError, r"retry_backoff_max must be a number"),
        ({"time_limit": -1}, ValueError, r"time_limit must be a number of seconds >= 0"),
        ({"soft_time_limit": "1"}, ValueError, r"soft_time_limit must be a number"),
        ({"rate_limit": "10/x"}, ImproperlyConfiguredTask, r"rate_limit must look like '10/s'"),
        ({"rate_limit": 10}, ImproperlyConfiguredTask, r"rate_limit must look like"),
        ({"expires": -5}, ValueError, r"expires must be a number of seconds >= 0"),
        (
            {"serializer": "no-such-format"},
            ImproperlyConfiguredTask,
            r"unknown serializer 'no-such-format'",
        ),
        ({"name": 5}, ImproperlyConfiguredTask, r"task name must be a non-empty string, not 5"),
    ],
)
def test_bad_option_is_refused_naming_task_and_option(
    options: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        Task(fn, **options)
    if "name" not in options:
        assert "@task option for tests.unit.test_task.fn:" in str(info.value)


def test_good_options_are_kept() -> None:
    t = Task(
        fn,
        queue="mail",
        priority=-100,
        max_retries=None,
        autoretry_for=KeyError,
        retry_backoff=2,
        rate_limit="1.5/s",
        expires=30,
        time_limit=10,
        soft_time_limit=5,
    )
    assert (t.queue, t.priority, t.max_retries) == ("mail", -100, None)
    assert t.autoretry_for == (KeyError,)
    assert t.expires == 30


def test_a_non_function_is_not_a_task() -> None:
    with pytest.raises(ImproperlyConfiguredTask, match="@task needs a function"):
        Task(5)  # type: ignore[arg-type]


def test_unknown_decorator_option_lists_the_known_ones() -> None:
    with pytest.raises(
        ImproperlyConfiguredTask, match=r"unknown @task option\(s\): retries \(known: .*max_retries"
    ):
        task(retries=3)


def test_a_task_cannot_be_decorated_again() -> None:
    with pytest.raises(ImproperlyConfiguredTask, match="is already a task"):
        task(tasks.add)


@override_settings(DJTASKS_TASK_ACKS_LATE=True)
def test_acks_late_defaults_to_the_setting() -> None:
    assert Task(fn).acks_late is True
    assert Task(fn, acks_late=False).acks_late is False


# -- names and the registry ----------------------------------------------------------


def test_names_default_to_module_and_function() -> None:
    assert tasks.add.name == "tests.testapp.tasks.add"
    assert tasks.renamed.name == "tests.renamed"
    assert registry.get("tests.testapp.tasks.add") is tasks.add
    assert registry.get("tests.renamed") is tasks.renamed
    assert "tests.testapp.tasks.renamed" not in registry


def test_autodiscovery_registered_the_test_app_tasks() -> None:
    assert {
        "tests.testapp.tasks.record",
        "tests.testapp.tasks.sleep",
        "tests.testapp.tasks.flaky",
    } <= set(registry.names())


def test_task_keeps_the_function_identity() -> None:
    assert tasks.add.__name__ == "add"
    assert tasks.add.__module__ == "tests.testapp.tasks"
    assert tasks.echo.__doc__ == "Return its argument: round-trips values through the worker."
    assert shared_task is task


def test_unknown_name_is_not_registered_with_a_hint() -> None:
    with pytest.raises(
        NotRegistered,
        match=r"task 'nope' is not registered: is its module "
        r"in an installed app's tasks.py",
    ):
        registry.get("nope")


def test_two_functions_with_one_name_is_an_error(temp_task: Callable[..., Any]) -> None:
    def first() -> None: ...
    def second() -> None: ...

    original = temp_task(first, name="tests.unit.clash")
    with pytest.raises(
        AlreadyRegistered,
        match=r"task name 'tests.unit.clash' is already used "
        r"by .*first; give .*second another name=",
    ):
        task(name="tests.unit.clash")(second)
    assert registry.get("tests.unit.clash") is original


def _define() -> Callable[[], int]:
    def job() -> int:
        return 1

    return job


def test_the_same_function_imported_twice_is_not_a_clash(temp_task: Callable[..., Any]) -> None:
    # A module imported twice (autoreload, python -m) defines the "same" function again.
    first = temp_task(_define(), name="tests.unit.reimported")
    again = temp_task(_define(), name="tests.unit.reimported")
    assert again is not first
    assert registry.get("tests.unit.reimported") is again


# -- calling in process ----------------------------------------------------------------


def test_bound_task_called_directly_gets_itself_and_a_direct_request() -> None:
    seen: dict[str, Any] = {}

    def probe(self: Any, x: int) -> int:
        seen["self"] = self
        seen["called_directly"] = self.request.called_directly
        return x * 2

    t = Task(probe, name="tests.unit.probe", bind=True)
    assert t(21) == 42
    assert seen == {"self": t, "called_directly": True}


def test_retry_outside_a_worker_raises_the_cause_or_says_why() -> None:
    t = Task(fn, name="tests.unit.retrying")
    with pytest.raises(KeyError):
        t.retry(exc=KeyError("cause"))
    with pytest.raises(RuntimeError, match=r"retry\(\) called outside a worker run"):
        t.retry()


def test_update_state_refuses_built_in_states() -> None:
    with pytest.raises(ValueError, match="takes a custom state such as 'PROGRESS'"):
        tasks.progress.update_state(task_id="x", state="SUCCESS")


# -- retry arithmetic -----------------------------------------------------------------


def test_backoff_doubles_from_the_factor_up_to_the_maximum() -> None:
    assert [backoff_countdown(n, 1.0, 600, jitter=False) for n in range(5)] == [1, 2, 4, 8, 16]
    assert [backoff_countdown(n, 0.5, 3, jitter=False) for n in range(5)] == [0.5, 1, 2, 3, 3]


def test_backoff_jitter_stays_between_zero_and_the_backoff() -> None:
    random.seed(1234)
    draws = [backoff_countdown(3, 1.0, 600, jitter=True) for _ in range(200)]
    assert all(0 <= d <= 8 for d in draws)
    assert len(set(draws)) > 100  # really random, not the fixed value


def test_countdown_for_retry_uses_backoff_or_the_retry_delay() -> None:
    assert Task(fn, retry_backoff=True, retry_jitter=False).countdown_for_retry(3) == 8
    assert Task(fn, retry_backoff=0.1, retry_jitter=False).countdown_for_retry(1) == 0.2
    assert (
        Task(fn, retry_backoff=True, retry_jitter=False, retry_backoff_max=5).countdown_for_retry(
            10
        )
        == 5
    )
    assert Task(fn, default_retry_delay=7).countdown_for_retry(4) == 7
    assert Task(fn, retry_kwargs={"countdown": 2}).countdown_for_retry(4) == 2


def test_an_async_function_is_refused_with_the_way_out() -> None:
    from djtasks import task
    from djtasks.exceptions import ImproperlyConfiguredTask

    async def fetch() -> None:
        pass

    with pytest.raises(ImproperlyConfiguredTask, match=r"async def.*async_to_sync"):
        task(name="tests.async_refused")(fetch)
