"""The ``OPTIONS`` of a :class:`~djtasks.backends.DatabaseBackend`: defaults, validation.

Every option can be set for the whole backend and overridden per queue::

    "OPTIONS": {
        "max_attempts": 3,          # runs in all, the first included (1: no retry)
        "backoff": 2,               # seconds before the 2nd run; doubles each time
        "backoff_max": 600,         # ... up to this
        "backoff_jitter": True,     # a random delay in [0, backoff] instead
        "retry_on": ["builtins.Exception"],  # which exceptions earn another run
        "time_limit": 300,          # seconds; the run is killed (prefork pool)
        "soft_time_limit": 240,     # seconds; SoftTimeLimitExceeded is raised in it
        "acks_late": False,         # run again if the worker dies while running it
        "unique": False,            # no second call of a task with the same arguments
        "unique_for": None,         # ... while the first is unfinished, or for N seconds
        "queues": {"emails": {"max_attempts": 5, "time_limit": 30}},
    }

Nothing here imports ``django.tasks``; the worker uses it on any Django.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

#: Option name → default.
DEFAULTS: dict[str, Any] = {
    "max_attempts": 1,
    "backoff": 1.0,
    "backoff_max": 600.0,
    "backoff_jitter": False,
    "retry_on": ("builtins.Exception",),
    "time_limit": None,
    "soft_time_limit": None,
    "acks_late": False,
    "unique": False,
    "unique_for": None,
}


_SECONDS = frozenset({"backoff", "backoff_max", "time_limit", "soft_time_limit", "unique_for"})


@dataclass(frozen=True)
class QueueOptions:
    """The options in force for one queue (backend-wide values, then the queue's own)."""

    max_attempts: int = 1
    backoff: float = 1.0
    backoff_max: float = 600.0
    backoff_jitter: bool = False
    retry_on: tuple[str, ...] = ("builtins.Exception",)
    time_limit: float | None = None
    soft_time_limit: float | None = None
    acks_late: bool = False
    unique: bool = False
    unique_for: float | None = None

    def retry_classes(self) -> tuple[type[BaseException], ...]:
        """The exception classes named by ``retry_on`` (validated by :func:`parse`)."""
        return tuple(import_string(path) for path in self.retry_on)


@dataclass(frozen=True)
class BackendOptions:
    """Parsed ``OPTIONS``: the backend-wide values and the per-queue overrides."""

    default: QueueOptions = QueueOptions()
    queues: Mapping[str, QueueOptions] = dataclasses.field(default_factory=dict)

    def for_queue(self, queue: str) -> QueueOptions:
        return self.queues.get(queue, self.default)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be option ``name``, or ``None`` if it can."""
    if name == "max_attempts":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return "must be an int >= 1 (1 means no retry)"
    elif name in ("backoff", "backoff_max"):
        if not _is_number(value) or value < 0:
            return "must be a number of seconds >= 0"
    elif name in ("backoff_jitter", "acks_late", "unique"):
        if not isinstance(value, bool):
            return "must be True or False"
    elif name in ("time_limit", "soft_time_limit", "unique_for"):
        if value is not None and (not _is_number(value) or value <= 0):
            return "must be a number of seconds > 0, or None"
    elif name == "retry_on":
        if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
            return "must be a non-empty list of exception class paths"
        for path in value:
            try:
                cls = import_string(path) if isinstance(path, str) else None
            except ImportError:
                cls = None
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                return f"{path!r} is not the dotted path of an exception class"
    return None


def _queue_options(
    base: QueueOptions, values: Mapping[str, Any], where: str, errors: list[str]
) -> QueueOptions:
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name not in DEFAULTS:
            errors.append(f"{where}unknown option {name!r} (known: {', '.join(sorted(DEFAULTS))})")
            continue
        problem = _check(name, value)
        if problem:
            errors.append(f"{where}{name} {problem}, not {value!r}")
            continue
        if name == "retry_on":
            value = tuple(value)
        elif value is not None and name in _SECONDS:
            value = float(value)
        changes[name] = value
    return dataclasses.replace(base, **changes)


def parse(
    options: Any, queues: set[str] | frozenset[str] = frozenset()
) -> tuple[BackendOptions, list[str]]:
    """Parse a backend's ``OPTIONS``; return the options and every problem found.

    A bad value is reported and its default kept, so the backend still loads
    (``manage.py check`` then shows every problem at once).
    """
    errors: list[str] = []
    if not isinstance(options, Mapping):
        return BackendOptions(), [f"OPTIONS must be a dict, not {type(options).__name__}"]
    backend_wide = {k: v for k, v in options.items() if k != "queues"}
    default = _queue_options(QueueOptions(), backend_wide, "", errors)
    per_queue: dict[str, QueueOptions] = {}
    raw = options.get("queues", {})
    if not isinstance(raw, Mapping):
        errors.append("queues must be a dict of queue name → options")
        raw = {}
    for queue, values in raw.items():
        where = f"queues[{queue!r}]: "
        if queues and queue not in queues:
            errors.append(f"{where}not one of this backend's QUEUES ({', '.join(sorted(queues))})")
        if not isinstance(values, Mapping):
            errors.append(f"{where}must be a dict of options")
            continue
        per_queue[queue] = _queue_options(default, values, where, errors)
    for queue, opts in [("", default), *per_queue.items()]:
        if (
            opts.time_limit is not None
            and opts.soft_time_limit is not None
            and opts.soft_time_limit >= opts.time_limit
        ):
            where = f"queues[{queue!r}]: " if queue else ""
            errors.append(
                f"{where}soft_time_limit ({opts.soft_time_limit}) must be less than "
                f"time_limit ({opts.time_limit}), or it never fires"
            )
    return BackendOptions(default, per_queue), errors
