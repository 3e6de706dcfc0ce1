"""routing.py: call option > DJTASKS_TASK_ROUTES (exact, then first glob) > task option > default."""

from __future__ import annotations

import pytest
from django.test import override_settings

from djtasks.routing import resolve, route_for

NAME = "shop.tasks.send_invoice"


def test_nothing_set_gives_the_defaults() -> None:
    assert resolve(NAME, None, None, None, None) == ("default", 0)


@override_settings(DJTASKS_DEFAULT_QUEUE="fallback", DJTASKS_DEFAULT_PRIORITY=7)
def test_default_queue_and_priority_come_from_settings() -> None:
    assert resolve(NAME, None, None, None, None) == ("fallback", 7)


@override_settings(DJTASKS_DEFAULT_QUEUE="fallback", DJTASKS_DEFAULT_PRIORITY=7)
def test_task_option_beats_the_default() -> None:
    assert resolve(NAME, None, None, "mail", -3) == ("mail", -3)


@override_settings(DJTASKS_TASK_ROUTES={NAME: {"queue": "routed", "priority": 50}})
def test_route_beats_the_task_option() -> None:
    assert resolve(NAME, None, None, "mail", -3) == ("routed", 50)


@override_settings(DJTASKS_TASK_ROUTES={NAME: {"queue": "routed", "priority": 50}})
def test_call_option_beats_the_route() -> None:
    assert resolve(NAME, "urgent", 99, "mail", -3) == ("urgent", 99)
    # Queue and priority are resolved separately.
    assert resolve(NAME, "urgent", None, "mail", -3) == ("urgent", 50)
    assert resolve(NAME, None, 99, "mail", -3) == ("routed", 99)


@override_settings(DJTASKS_TASK_ROUTES={NAME: {"priority": 0}})
def test_route_priority_zero_is_a_priority_not_a_missing_one() -> None:
    assert resolve(NAME, None, None, "mail", -3) == ("mail", 0)


@override_settings(DJTASKS_TASK_ROUTES={NAME: {"queue": "routed"}})
def test_route_without_priority_keeps_the_task_priority() -> None:
    assert resolve(NAME, None, None, "mail", -3) == ("routed", -3)


@override_settings(DJTASKS_TASK_ROUTES={NAME: "plain-string"})
def test_route_may_be_just_a_queue_name() -> None:
    assert route_for(NAME) == {"queue": "plain-string"}
    assert resolve(NAME, None, None, None, 4) == ("plain-string", 4)


@override_settings(DJTASKS_TASK_ROUTES={"shop.*": "glob", NAME: "exact"})
def test_exact_name_beats_a_glob_listed_before_it() -> None:
    assert resolve(NAME, None, None, None, None)[0] == "exact"
    assert resolve("shop.tasks.other", None, None, None, None)[0] == "glob"


@override_settings(
    DJTASKS_TASK_ROUTES={"shop.tasks.*": "first", "shop.*": "second", "*.send_*": "third"}
)
def test_first_matching_glob_wins() -> None:
    assert resolve(NAME, None, None, None, None)[0] == "first"
    assert resolve("shop.views.x", None, None, None, None)[0] == "second"
    assert resolve("blog.send_mail", None, None, None, None)[0] == "third"


@override_settings(DJTASKS_TASK_ROUTES={"Shop.*": "glob"})
def test_globs_are_case_sensitive() -> None:
    assert resolve(NAME, None, None, None, None)[0] == "default"


@pytest.mark.parametrize("routes", [{}, {"other.task": "q"}, {"other.*": "q"}])
def test_no_matching_route_is_an_empty_route(routes: dict) -> None:
    with override_settings(DJTASKS_TASK_ROUTES=routes):
        assert route_for(NAME) == {}
