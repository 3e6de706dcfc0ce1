"""checks.py: every bad DJTASKS_* value gives its own djtasks.E0xx error."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from djtasks.checks import check_settings


def ids(**overrides: Any) -> list[str]:
    with override_settings(**overrides):
        return [e.id for e in check_settings()]


def test_the_test_settings_pass() -> None:
    assert check_settings() == []


@pytest.mark.parametrize(
    ("setting", "value", "error_id"),
    [
        ("DATABASE", "nope", "djtasks.E001"),
        ("DEFAULT_QUEUE", "", "djtasks.E003"),
        ("DEFAULT_QUEUE", 5, "djtasks.E003"),
        ("DEFAULT_QUEUE", "q" * 101, "djtasks.E003"),
        ("DEFAULT_PRIORITY", 101, "djtasks.E004"),
        ("DEFAULT_PRIORITY", "1", "djtasks.E004"),
        ("DEFAULT_PRIORITY", True, "djtasks.E004"),
        ("TASK_ROUTES", ["not", "a", "dict"], "djtasks.E005"),
        ("TASK_ROUTES", {"a.*": 5}, "djtasks.E005"),
        ("TASK_ROUTES", {"a.*": ""}, "djtasks.E005"),
        ("TASK_ROUTES", {"a.*": {"queue": "q", "priority": 200}}, "djtasks.E005"),
        ("TASK_ROUTES", {"a.*": {"queue": 1}}, "djtasks.E005"),
        ("TASK_ROUTES", {"a.*": {"exchange": "x"}}, "djtasks.E005"),
        ("TASK_SERIALIZER", "no-such-format", "djtasks.E006"),
        ("RESULT_SERIALIZER", "no-such-format", "djtasks.E006"),
        ("ACCEPT_CONTENT", [], "djtasks.E007"),
        ("ACCEPT_CONTENT", "json", "djtasks.E007"),
        ("ALWAYS_EAGER", "yes", "djtasks.E008"),
        ("EAGER_PROPAGATES", 1, "djtasks.E008"),
        ("TASK_ACKS_LATE", None, "djtasks.E008"),
        ("IMPORTS", "myapp.tasks", "djtasks.E009"),
        ("IMPORTS", ["ok", 5], "djtasks.E009"),
        ("TASK_TIME_LIMIT", 0, "djtasks.E010"),
        ("TASK_SOFT_TIME_LIMIT", "10", "djtasks.E010"),
        ("VISIBILITY_TIMEOUT", 0, "djtasks.E011"),
        ("POLL_INTERVAL", -1, "djtasks.E011"),
        ("PREFETCH_MULTIPLIER", 0, "djtasks.E012"),
        ("PREFETCH_MULTIPLIER", 2.0, "djtasks.E012"),
        ("RESULT_EXPIRES", -1, "djtasks.E013"),
        ("LISTEN_DATABASE_URL", "mysql://x", "djtasks.E014"),
        ("WORKER_LOOKAHEAD", -0.001, "djtasks.E016"),
        ("WORKER_LOOKAHEAD", "5ms", "djtasks.E016"),
    ],
)
def test_bad_value_gives_its_error(setting: str, value: Any, error_id: str) -> None:
    with override_settings(**{f"DJTASKS_{setting}": value}):
        errors = check_settings()
    assert [e.id for e in errors] == [error_id]
    assert errors[0].msg.startswith(f"DJTASKS_{setting}: ")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("TASK_ROUTES", {"a.b": "q", "a.*": {"queue": "q"}, "b.*": {"priority": -100}}),
        ("TASK_TIME_LIMIT", 30),
        ("RESULT_EXPIRES", None),
        ("LISTEN_DATABASE_URL", None),
        ("LISTEN_DATABASE_URL", "postgresql://u@h/db"),
        ("ACCEPT_CONTENT", ("json",)),
        ("DEFAULT_PRIORITY", -100),
        ("POLL_INTERVAL", 0.01),
    ],
)
def test_good_values_pass(setting: str, value: Any) -> None:
    assert ids(**{f"DJTASKS_{setting}": value}) == []


def test_queue_database_needs_postgresql_or_sqlite() -> None:
    with (
        mock.patch.dict(settings.DATABASES, {"other": {"ENGINE": "django.db.backends.mysql"}}),
        override_settings(DJTASKS_DATABASE="other"),
    ):
        errors = check_settings()
    assert [e.id for e in errors] == ["djtasks.E002"]
    assert "needs PostgreSQL or SQLite" in errors[0].msg


def test_unknown_djtasks_setting_is_a_warning_naming_it() -> None:
    with override_settings(DJTASKS_TASK_ROUTE={}):
        errors = check_settings()
    assert [(e.id, e.msg) for e in errors] == [
        ("djtasks.W001", "DJTASKS_TASK_ROUTE is not a djtasks setting (typo?)")
    ]


def test_manage_py_check_reports_the_errors() -> None:
    with (
        override_settings(DJTASKS_PREFETCH_MULTIPLIER=0),
        pytest.raises(SystemCheckError, match=r"djtasks.E012.*PREFETCH_MULTIPLIER"),
    ):
        # Only this tag: on Django 6 the model checks ask the database about JSON.
        call_command("check", tags=["compatibility"])
