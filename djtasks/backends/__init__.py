"""A backend for Django's own task framework, ``django.tasks`` (Django >= 6.0).

::

    TASKS = {"default": {"BACKEND": "djtasks.backends.DatabaseBackend"}}

``@django.tasks.task`` functions then go into the djtasks table and run on
``manage.py taskworker`` beside djtasks' own tasks. See
``docs/django-tasks.md`` for the whole story.

This package imports on any Django (the worker imports
:mod:`djtasks.backends.execution` to recognise django.tasks rows); only
:class:`~djtasks.backends.database.DatabaseBackend` needs Django 6, and asking
for it on an older Django raises :class:`ImportError` saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .database import DatabaseBackend

__all__ = ["HEADER", "DatabaseBackend"]

#: The ``headers`` key that marks a task row as a django.tasks call. Its value
#: is a dict: ``backend`` (the TASKS alias), ``enqueued_at`` (ISO 8601) and
#: ``run_after`` (whether the call named a time, so ``get_result()`` can give
#: the task back exactly as it was enqueued).
HEADER = "django.tasks"


def __getattr__(name: str) -> Any:
    # Lazy, so that this package imports on Django 5.2 too, and so that
    # TASKS = {"BACKEND": "djtasks.backends.DatabaseBackend"} never touches the
    # models before the app registry is ready.
    if name == "DatabaseBackend":
        from .database import DatabaseBackend

        return DatabaseBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
