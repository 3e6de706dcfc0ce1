"""System checks (``manage.py check``) for the ``DJTASKS_*`` settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error, Tags, Warning, register

from . import serialization
from .conf import DEFAULTS, settings


def _error(name: str, msg: str, n: int) -> Error:
    return Error(f"DJTASKS_{name}: {msg}", id=f"djtasks.E{n:03d}")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    errors: list[Any] = []
    db = settings.DATABASE
    if db not in django_settings.DATABASES:
        errors.append(_error("DATABASE", f"{db!r} is not a key of DATABASES", 1))
    else:
        engine = django_settings.DATABASES[db].get("ENGINE", "")
        if not engine.endswith(("postgresql", "sqlite3")):
            errors.append(_error("DATABASE", f"the queue needs PostgreSQL or SQLite, and "
                                 f"{db!r} uses {engine!r}", 2))
    queue = settings.DEFAULT_QUEUE
    if not isinstance(queue, str) or not queue or len(queue) > 100:
        errors.append(_error("DEFAULT_QUEUE", "must be a non-empty string of at most 100 "
                             "characters", 3))
    prio = settings.DEFAULT_PRIORITY
    if not isinstance(prio, int) or isinstance(prio, bool) or not -100 <= prio <= 100:
        errors.append(_error("DEFAULT_PRIORITY", "must be an int from -100 to 100", 4))
    errors += _check_routes(settings.TASK_ROUTES)
    for name in ("TASK_SERIALIZER", "RESULT_SERIALIZER"):
        try:
            serialization.get(getattr(settings, name))
        except (ValueError, TypeError) as exc:
            errors.append(_error(name, str(exc), 6))
    accept = settings.ACCEPT_CONTENT
    if not isinstance(accept, list | tuple) or not accept:
        errors.append(_error("ACCEPT_CONTENT", "must be a non-empty list of serializer names",
                             7))
    for name in ("ALWAYS_EAGER", "EAGER_PROPAGATES", "TASK_ACKS_LATE", "SEND_FAILURE_EMAILS",
                 "PREPARE_STATEMENTS"):
        if not isinstance(getattr(settings, name), bool):
            errors.append(_error(name, "must be True or False", 8))
    imports = settings.IMPORTS
    if not isinstance(imports, list | tuple) or not all(isinstance(m, str) for m in imports):
        errors.append(_error("IMPORTS", "must be a list of module paths", 9))
    for name in ("TASK_TIME_LIMIT", "TASK_SOFT_TIME_LIMIT"):
        value = getattr(settings, name)
        if value is not None and (not _is_number(value) or value <= 0):
            errors.append(_error(name, "must be a number of seconds > 0, or None", 10))
    for name in ("VISIBILITY_TIMEOUT", "POLL_INTERVAL", "WORKER_RESULT_FLUSH_INTERVAL",
                 "FAILURE_EMAIL_INTERVAL"):
        value = getattr(settings, name)
        if not _is_number(value) or value <= 0:
            errors.append(_error(name, "must be a number of seconds > 0", 11))
    pm = settings.PREFETCH_MULTIPLIER
    if not isinstance(pm, int) or isinstance(pm, bool) or pm < 1:
        errors.append(_error("PREFETCH_MULTIPLIER", "must be an int >= 1", 12))
    expires = settings.RESULT_EXPIRES
    if expires is not None and (not _is_number(expires) or expires <= 0):
        errors.append(_error("RESULT_EXPIRES", "must be a number of seconds > 0, or None", 13))
    url = settings.LISTEN_DATABASE_URL
    if url is not None and not (isinstance(url, str) and url.startswith(("postgres://",
                                                                         "postgresql://"))):
        errors.append(_error("LISTEN_DATABASE_URL", "must be a postgresql:// URL or None", 14))
    unknown = sorted(n[8:] for n in dir(django_settings)
                     if n.startswith("DJTASKS_") and n[8:] not in DEFAULTS)
    errors.extend(Warning(f"DJTASKS_{n} is not a djtasks setting (typo?)", id="djtasks.W001")
                  for n in unknown)
    return errors


def _check_routes(routes: Any) -> list[Any]:
    if not isinstance(routes, dict):
        return [_error("TASK_ROUTES", "must be a dict of task name or glob → queue name "
                       "or {'queue': ..., 'priority': ...}", 5)]
    errors = []
    for pattern, route in routes.items():
        if isinstance(route, str) and route:
            continue
        if (isinstance(route, dict) and set(route) <= {"queue", "priority"}
                and (route.get("queue") is None or isinstance(route.get("queue"), str))
                and (route.get("priority") is None
                     or (isinstance(route["priority"], int)
                         and -100 <= route["priority"] <= 100))):
            continue
        errors.append(_error("TASK_ROUTES", f"route {pattern!r}: {route!r} must be a queue "
                             "name or {'queue': str, 'priority': int -100..100}", 5))
    return errors


@register(Tags.compatibility)
def check_beat_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``DJTASKS_BEAT_*``: the schedule entries and beat's timings."""
    from .beat import entry_fields
    from .registry import tasks as registry

    errors: list[Any] = []
    for name in ("BEAT_MAX_LOOP_INTERVAL", "BEAT_LEASE", "BEAT_GRACE"):
        value = getattr(settings, name)
        if not _is_number(value) or value <= 0:
            errors.append(_error(name, "must be a number of seconds > 0", 102))
    if settings.BEAT_ELECTION not in ("auto", "lease"):
        errors.append(_error("BEAT_ELECTION", "must be 'auto' (PostgreSQL advisory lock, "
                             "SQLite lease row) or 'lease'", 103))
    schedule = settings.BEAT_SCHEDULE
    if not isinstance(schedule, dict):
        return [*errors, _error("BEAT_SCHEDULE", "must be a dict of name → {'task': ..., "
                                "'schedule': ...}", 101)]
    for name, spec in schedule.items():
        try:
            fields = entry_fields(name, spec)
        except ValueError as exc:
            errors.append(Error(str(exc), id="djtasks.E101"))
            continue
        if fields["task"] not in registry:
            errors.append(Warning(
                f"DJTASKS_BEAT_SCHEDULE[{name!r}]: task {fields['task']!r} is not registered "
                "(is its module in an installed app's tasks.py or in DJTASKS_IMPORTS?); beat "
                "will not send it", id="djtasks.W101"))
    return errors
