"""OPTIONS of djtasks.backends.DatabaseBackend: defaults, per-queue overrides, errors.

:mod:`djtasks.backends.options` does not need django.tasks: these run on every Django.
"""

from __future__ import annotations

import pytest

from djtasks.backends.options import BackendOptions, QueueOptions, parse


def test_defaults_are_django_semantics() -> None:
    parsed, errors = parse({})
    assert errors == []
    assert parsed == BackendOptions()
    opts = parsed.for_queue("anything")
    assert opts.max_attempts == 1  # a failure is final, as with Django's own backends
    assert (opts.time_limit, opts.soft_time_limit, opts.acks_late) == (None, None, False)
    assert opts.retry_classes() == (Exception,)


def test_backend_wide_values_and_queue_overrides() -> None:
    parsed, errors = parse(
        {
            "max_attempts": 3,
            "backoff": 2,
            "time_limit": 60,
            "retry_on": ["builtins.OSError"],
            "queues": {"emails": {"max_attempts": 5, "soft_time_limit": 10}},
        },
        {"default", "emails"},
    )
    assert errors == []
    assert parsed.for_queue("default") == QueueOptions(
        max_attempts=3, backoff=2.0, time_limit=60.0, retry_on=("builtins.OSError",)
    )
    emails = parsed.for_queue("emails")
    # A queue inherits the backend-wide values it does not set.
    assert (emails.max_attempts, emails.backoff, emails.time_limit, emails.soft_time_limit) == (
        5,
        2.0,
        60.0,
        10.0,
    )
    assert emails.retry_classes() == (OSError,)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be an int >= 1 (1 means no retry), not 0"),
        ({"max_attempts": True}, "max_attempts must be an int >= 1"),
        ({"backoff": -1}, "backoff must be a number of seconds >= 0, not -1"),
        ({"backoff_max": "10"}, "backoff_max must be a number of seconds >= 0"),
        ({"backoff_jitter": 1}, "backoff_jitter must be True or False"),
        ({"acks_late": "yes"}, "acks_late must be True or False"),
        ({"unique": None}, "unique must be True or False"),
        ({"unique_for": -1}, "unique_for must be a number of seconds > 0, or None"),
        ({"time_limit": 0}, "time_limit must be a number of seconds > 0, or None"),
        ({"soft_time_limit": "5"}, "soft_time_limit must be a number of seconds > 0, or None"),
        ({"retry_on": "builtins.Exception"}, "retry_on must be a non-empty list"),
        ({"retry_on": []}, "retry_on must be a non-empty list"),
        ({"retry_on": ["os.system"]}, "'os.system' is not the dotted path of an exception class"),
        ({"retry_on": ["no.such.Error"]}, "'no.such.Error' is not the dotted path"),
        ({"maxattempts": 3}, "unknown option 'maxattempts' (known: acks_late, backoff"),
        (
            {"time_limit": 5, "soft_time_limit": 5},
            "soft_time_limit (5.0) must be less than time_limit (5.0)",
        ),
        ({"queues": ["emails"]}, "queues must be a dict of queue name"),
        ({"queues": {"emails": 3}}, "queues['emails']: must be a dict of options"),
        ({"queues": {"emails": {"max_attempts": 0}}}, "queues['emails']: max_attempts must be"),
        (
            {"queues": {"elsewhere": {}}},
            "queues['elsewhere']: not one of this backend's QUEUES (default, emails)",
        ),
    ],
)
def test_bad_values_are_reported_and_defaults_kept(options: dict, message: str) -> None:
    parsed, errors = parse(options, {"default", "emails"})
    assert len(errors) == 1, errors
    assert message in errors[0]
    assert isinstance(parsed, BackendOptions)


def test_every_problem_is_reported_at_once() -> None:
    _, errors = parse({"max_attempts": 0, "backoff": -1, "colour": "blue"})
    assert len(errors) == 3


def test_options_must_be_a_dict() -> None:
    parsed, errors = parse(["max_attempts", 3])
    assert errors == ["OPTIONS must be a dict, not list"]
    assert parsed == BackendOptions()


def test_queues_are_not_restricted_when_the_backend_has_no_queue_list() -> None:
    _, errors = parse({"queues": {"anything": {"max_attempts": 2}}})
    assert errors == []
