"""The ``DJTASKS_*`` settings, with their defaults, read lazily.

``from djtasks.conf import settings`` then ``settings.DEFAULT_QUEUE``: each
attribute is looked up in Django's settings as ``DJTASKS_<NAME>`` at access
time (so ``override_settings`` works) and falls back to the default here.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings

#: Every setting djtasks reads, with its default. ``checks.py`` validates them.
DEFAULTS: dict[str, Any] = {
    # Where the queue lives.
    "DATABASE": "default",
    # Calling.
    "DEFAULT_QUEUE": "default",
    "DEFAULT_PRIORITY": 0,
    "TASK_ROUTES": {},
    "TASK_SERIALIZER": "json",
    "RESULT_SERIALIZER": "json",
    "ACCEPT_CONTENT": ["json"],
    "ALWAYS_EAGER": False,
    "EAGER_PROPAGATES": True,
    "IMPORTS": [],
    "TASK_TIME_LIMIT": None,
    "TASK_SOFT_TIME_LIMIT": None,
    "TASK_ACKS_LATE": False,
    # Worker.
    "VISIBILITY_TIMEOUT": 60.0,
    "POLL_INTERVAL": 1.0,
    "PREFETCH_MULTIPLIER": 4,
    "WORKER_RESULT_FLUSH_INTERVAL": 0.005,
    "LISTEN_DATABASE_URL": None,
    # Results.
    "RESULT_EXPIRES": 86400,
}

_BOOL_SETTINGS = {"ALWAYS_EAGER", "EAGER_PROPAGATES", "TASK_ACKS_LATE"}


class Settings:
    """Attribute access to ``DJTASKS_*`` settings with defaults."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown djtasks setting {name!r}")
        return getattr(django_settings, f"DJTASKS_{name}", DEFAULTS[name])


settings = Settings()
