"""``{% load djtasks %}``: a live progress bar for a task, and small formatting filters.

::

    {% load djtasks %}
    {% djtasks_status_script %}              {# once per page, loads status.js #}
    {% task_progress result %}               {# an AsyncResult or a task id #}
    {% task_progress task_id on_finish="reportReady" interval=500 %}

The bar follows the task through its signed status URL (see
:meth:`AsyncResult.status_url() <djtasks.result.AsyncResult.status_url>`)
and, when the task ends, calls ``window.reportReady(status, element)`` and
dispatches a ``djtasks:finish`` event on the element.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html

from ..dashboard import duration
from ..result import AsyncResult

register = template.Library()


@register.inclusion_tag("djtasks/progress.html")
def task_progress(
    task: Any, on_finish: str = "", interval: int = 1000, label: str = ""
) -> dict[str, Any]:
    """Render a progress bar that follows ``task`` (an ``AsyncResult`` or a task id)."""
    result = task if isinstance(task, AsyncResult) else AsyncResult(task)
    return {
        "task_id": result.id,
        "status_url": result.status_url(),
        "bulk_url": reverse("djtasks:bulk-status"),
        "on_finish": on_finish,
        "interval": int(interval),
        "label": label,
    }


@register.simple_tag
def djtasks_status_script() -> str:
    """The ``<script>`` tag of ``djtasks/status.js`` (deferred; include it once)."""
    return format_html('<script src="{}" defer></script>', static("djtasks/status.js"))


@register.filter
def seconds(value: Any) -> str:
    """A number of seconds (or a timedelta) as ``"12 ms"``, ``"3.4 s"``, ``"5 min 2 s"``."""
    if value is None or value == "":
        return ""
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    return duration(float(value))


@register.filter
def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """How long ago ``value`` was (relative to ``now`` if given): ``"4 s ago"``, ``"3 min ago"``."""
    from django.utils import timezone

    if value is None:
        return ""
    seconds = int(((now or timezone.now()) - value).total_seconds())
    if seconds < 1:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@register.filter
def percent(value: Any, digits: int = 1) -> str:
    """``0.0312`` → ``"3.1%"``; ``None`` → ``"—"``."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.{int(digits)}f}%"
