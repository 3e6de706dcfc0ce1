"""System checks (``manage.py check``) for the ``DJTASKS_*`` settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.core.checks import Error, Tags, register

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
            errors.append(
                _error(
                    "DATABASE",
                    f"the queue needs PostgreSQL or SQLite, and {db!r} uses {engine!r}",
                    2,
                )
            )
    queue = settings.DEFAULT_QUEUE
    if not isinstance(queue, str) or not queue or len(queue) > 100:
        errors.append(
            _error("DEFAULT_QUEUE", "must be a non-empty string of at most 100 characters", 3)
        )
    prio = settings.DEFAULT_PRIORITY
    if not isinstance(prio, int) or isinstance(prio, bool) or not -100 <= prio <= 100:
        errors.append(_error("DEFAULT_PRIORITY", "must be an int from -100 to 100", 4))
    errors += _check_queues(settings.QUEUES, queue, settings.TASK_ROUTES)
    errors += _check_routes(settings.TASK_ROUTES)
    for name in ("TASK_SERIALIZER", "RESULT_SERIALIZER"):
        try:
            serialization.get(getattr(settings, name))
        except (ValueError, TypeError) as exc:
            errors.append(_error(name, str(exc), 6))
    accept = settings.ACCEPT_CONTENT
    if not isinstance(accept, list | tuple) or not accept:
        errors.append(_error("ACCEPT_CONTENT", "must be a non-empty list of serializer names", 7))
    for name in (
        "ALWAYS_EAGER",
        "EAGER_PROPAGATES",
        "TASK_ACKS_LATE",
        "SEND_FAILURE_EMAILS",
        "PREPARE_STATEMENTS",
    ):
        if not isinstance(getattr(settings, name), bool):
            errors.append(_error(name, "must be True or False", 8))
    imports = settings.IMPORTS
    if not isinstance(imports, list | tuple) or not all(isinstance(m, str) for m in imports):
        errors.append(_error("IMPORTS", "must be a list of module paths", 9))
    for name in ("TASK_TIME_LIMIT", "TASK_SOFT_TIME_LIMIT"):
        value = getattr(settings, name)
        if value is not None and (not _is_number(value) or value <= 0):
            errors.append(_error(name, "must be a number of seconds > 0, or None", 10))
    for name in ("VISIBILITY_TIMEOUT", "POLL_INTERVAL", "FAILURE_EMAIL_INTERVAL"):
        value = getattr(settings, name)
        if not _is_number(value) or value <= 0:
            errors.append(_error(name, "must be a number of seconds > 0", 11))
    for name in ("PREFETCH_MULTIPLIER", "MAX_REDELIVERIES"):
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(_error(name, "must be an int >= 1", 12))
    lookahead = settings.WORKER_LOOKAHEAD
    if not _is_number(lookahead) or lookahead < 0:
        errors.append(_error("WORKER_LOOKAHEAD", "must be a number of seconds >= 0", 16))
    expires = settings.RESULT_EXPIRES
    if expires is not None and (not _is_number(expires) or expires <= 0):
        errors.append(_error("RESULT_EXPIRES", "must be a number of seconds > 0, or None", 13))
    url = settings.LISTEN_DATABASE_URL
    if url is not None and not (
        isinstance(url, str) and url.startswith(("postgres://", "postgresql://"))
    ):
        errors.append(_error("LISTEN_DATABASE_URL", "must be a postgresql:// URL or None", 14))
    unknown = sorted(
        n[8:] for n in dir(django_settings) if n.startswith("DJTASKS_") and n[8:] not in DEFAULTS
    )
    errors.extend(
        checks.Warning(f"DJTASKS_{n} is not a djtasks setting (typo?)", id="djtasks.W001")
        for n in unknown
    )
    return errors


def _check_queues(allowed: Any, default: Any, routes: Any) -> list[Any]:
    if allowed is None:
        return []
    if (
        not isinstance(allowed, list | tuple)
        or not allowed
        or not all(isinstance(q, str) and q and len(q) <= 100 for q in allowed)
    ):
        return [_error("QUEUES", "must be None (any queue) or a non-empty list of queue names", 15)]
    named = [("DJTASKS_DEFAULT_QUEUE", default)]
    if isinstance(routes, dict):
        named += [
            (f"DJTASKS_TASK_ROUTES[{p!r}]", r if isinstance(r, str) else r.get("queue"))
            for p, r in routes.items()
            if isinstance(r, str | dict)
        ]
    return [
        _error("QUEUES", f"{where} names queue {q!r}, which is not in the list", 15)
        for where, q in named
        if q is not None and q not in allowed
    ]


def _check_routes(routes: Any) -> list[Any]:
    if not isinstance(routes, dict):
        return [
            _error(
                "TASK_ROUTES",
                "must be a dict of task name or glob → queue name "
                "or {'queue': ..., 'priority': ...}",
                5,
            )
        ]
    errors = []
    for pattern, route in routes.items():
        if isinstance(route, str) and route:
            continue
        if (
            isinstance(route, dict)
            and set(route) <= {"queue", "priority"}
            and (route.get("queue") is None or isinstance(route.get("queue"), str))
            and (
                route.get("priority") is None
                or (isinstance(route["priority"], int) and -100 <= route["priority"] <= 100)
            )
        ):
            continue
        errors.append(
            _error(
                "TASK_ROUTES",
                f"route {pattern!r}: {route!r} must be a queue "
                "name or {'queue': str, 'priority': int -100..100}",
                5,
            )
        )
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
        errors.append(
            _error(
                "BEAT_ELECTION",
                "must be 'auto' (PostgreSQL advisory lock, SQLite lease row) or 'lease'",
                103,
            )
        )
    schedule = settings.BEAT_SCHEDULE
    if not isinstance(schedule, dict):
        return [
            *errors,
            _error("BEAT_SCHEDULE", "must be a dict of name → {'task': ..., 'schedule': ...}", 101),
        ]
    for name, spec in schedule.items():
        try:
            fields = entry_fields(name, spec)
        except ValueError as exc:
            errors.append(Error(str(exc), id="djtasks.E101"))
            continue
        if fields["task"] not in registry:
            errors.append(
                checks.Warning(
                    f"DJTASKS_BEAT_SCHEDULE[{name!r}]: task {fields['task']!r} is not registered "
                    "(is its module in an installed app's tasks.py or in DJTASKS_IMPORTS?); beat "
                    "will not send it",
                    id="djtasks.W101",
                )
            )
    return errors


@register(Tags.compatibility, Tags.security)
def check_message_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Serializers, signing, compression and payload size (ids ``djtasks.E2xx``/``W2xx``)."""
    from . import compression

    errors: list[Any] = []
    sign = settings.SIGN_MESSAGES
    if not isinstance(sign, bool):
        errors.append(_error("SIGN_MESSAGES", "must be True or False", 201))
    accept = settings.ACCEPT_CONTENT
    accepted: set[str] = set()
    for item in accept if isinstance(accept, list | tuple) else ():
        ser = serialization.lookup(item)
        if ser is None:
            errors.append(
                _error(
                    "ACCEPT_CONTENT",
                    f"{item!r} is not a serializer (known: {', '.join(serialization.names())})",
                    202,
                )
            )
            continue
        accepted.add(ser.name)
        try:
            serialization.get(ser.name)
        except ValueError as exc:
            errors.append(_error("ACCEPT_CONTENT", str(exc), 203))
    used = (*accepted, settings.TASK_SERIALIZER, settings.RESULT_SERIALIZER)
    unsafe = sorted(
        {ser.name for ser in map(serialization.lookup, used) if ser is not None and ser.unsafe}
    )
    if unsafe and sign is not True:
        errors.append(
            _error(
                "SIGN_MESSAGES",
                f"must be True when {' and '.join(unsafe)} is accepted or used: "
                "decoding it can run code, so only signed payloads may be decoded",
                204,
            )
        )
    for name, what in (
        ("TASK_SERIALIZER", "workers will refuse tasks sent with it"),
        ("RESULT_SERIALIZER", "AsyncResult cannot read the results"),
    ):
        value = getattr(settings, name)
        if (
            accepted
            and isinstance(value, str)
            and value in serialization.names()
            and value not in accepted
        ):
            errors.append(
                checks.Warning(
                    f"DJTASKS_{name} {value!r} is not in DJTASKS_ACCEPT_CONTENT: {what}",
                    id="djtasks.W201",
                )
            )
    value = settings.COMPRESSION
    if value is not None and value not in compression.names():
        errors.append(
            _error(
                "COMPRESSION",
                f"must be None or one of {', '.join(compression.names())}, not {value!r}",
                205,
            )
        )
    for name, low in (("COMPRESSION_THRESHOLD", 0), ("MAX_PAYLOAD_BYTES", 1)):
        value = getattr(settings, name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < low
        ):
            errors.append(_error(name, f"must be a number of bytes >= {low}, or None", 206))
    key = settings.SIGNING_KEY
    if key is not None and not (isinstance(key, str | bytes) and key):
        errors.append(
            _error("SIGNING_KEY", "must be a non-empty string, or None to use SECRET_KEY", 207)
        )
    fallbacks = settings.SIGNING_KEY_FALLBACKS
    if not isinstance(fallbacks, list | tuple) or not all(
        isinstance(k, str | bytes) and k for k in fallbacks
    ):
        errors.append(_error("SIGNING_KEY_FALLBACKS", "must be a list of non-empty strings", 208))
    return errors


@register(Tags.compatibility, Tags.security)
def check_api_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The HTTP API's tokens and the metrics' window (ids ``djtasks.E3xx``/``W3xx``)."""
    from django.core.checks import Warning as CheckWarning

    errors: list[Any] = []
    tokens = settings.API_TOKENS
    if not isinstance(tokens, dict) or not all(
        isinstance(t, str) and t and isinstance(u, str) and u for t, u in tokens.items()
    ):
        errors.append(
            _error("API_TOKENS", "must be a dict of token → username (non-empty strings)", 301)
        )
    else:
        short = sum(len(t) < 32 for t in tokens)
        if short:
            errors.append(
                CheckWarning(
                    f"DJTASKS_API_TOKENS: {short} token(s) shorter than 32 characters; use "
                    "random ones, e.g. python -c 'import secrets; print(secrets.token_urlsafe())'",
                    id="djtasks.W301",
                )
            )
    window = settings.METRICS_WINDOW
    if not _is_number(window) or not 10 <= window <= 86400:
        errors.append(_error("METRICS_WINDOW", "must be a number of seconds from 10 to 86400", 302))
    return errors
