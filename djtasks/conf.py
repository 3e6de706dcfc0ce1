"""The ``DJTASKS_*`` settings, with their defaults, read lazily.

``from djtasks.conf import settings`` then ``settings.DEFAULT_QUEUE``: each
attribute is looked up in Django's settings as ``DJTASKS_<NAME>`` at access
time (so ``override_settings`` works) and falls back to the default here.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

#: Every setting djtasks reads, with its default. ``checks.py`` validates them.
DEFAULTS: dict[str, Any] = {
    # Where the queue lives.
    "DATABASE": "default",
    # Calling.
    "DEFAULT_QUEUE": "default",
    "DEFAULT_PRIORITY": 0,
    "QUEUES": None,
    "TASK_ROUTES": {},
    "TASK_SERIALIZER": "json",
    "RESULT_SERIALIZER": "json",
    "ACCEPT_CONTENT": ["json"],
    # Message security and size (serialization.py, message_signing.py, compression.py).
    "SIGN_MESSAGES": False,
    "SIGNING_KEY": None,
    "SIGNING_KEY_FALLBACKS": [],
    "COMPRESSION": None,
    "COMPRESSION_THRESHOLD": None,
    "MAX_PAYLOAD_BYTES": 4 * 1024 * 1024,
    "ALWAYS_EAGER": False,
    "EAGER_PROPAGATES": True,
    "IMPORTS": [],
    "TASK_TIME_LIMIT": None,
    "TASK_SOFT_TIME_LIMIT": None,
    "TASK_ACKS_LATE": False,
    "MAX_REDELIVERIES": 3,
    # Worker.
    "VISIBILITY_TIMEOUT": 60.0,
    "POLL_INTERVAL": 1.0,
    "PREFETCH_MULTIPLIER": 4,
    "WORKER_LOOKAHEAD": 0.005,
    "LISTEN_DATABASE_URL": None,
    "PREPARE_STATEMENTS": True,
    "SEND_FAILURE_EMAILS": False,
    "FAILURE_EMAIL_INTERVAL": 300,
    # Beat (taskbeat).
    "BEAT_SCHEDULE": {},
    "BEAT_MAX_LOOP_INTERVAL": 5.0,
    "BEAT_LEASE": 5.0,
    "BEAT_GRACE": 60.0,
    "BEAT_ELECTION": "auto",
    # Results.
    "RESULT_EXPIRES": 86400,
    # The HTTP API and metrics (djtasks.api): token → username, and the metrics' window.
    "API_TOKENS": {},
    "METRICS_WINDOW": 300,
}

_BOOL_SETTINGS = {
    "ALWAYS_EAGER",
    "EAGER_PROPAGATES",
    "TASK_ACKS_LATE",
    "SEND_FAILURE_EMAILS",
    "PREPARE_STATEMENTS",
}


class Settings:
    """Attribute access to ``DJTASKS_*`` settings with defaults.

    Values are cached (the hot paths read several per task) and the cache is
    dropped whenever Django reports a changed setting (``override_settings``).
    """

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown djtasks setting {name!r}")
        try:
            return self._cache[name]
        except KeyError:
            value = getattr(django_settings, f"DJTASKS_{name}", DEFAULTS[name])
            self._cache[name] = value
            return value

    def clear(self) -> None:
        self._cache.clear()


settings = Settings()


@receiver(setting_changed)
def _setting_changed(**kwargs: Any) -> None:
    settings.clear()
