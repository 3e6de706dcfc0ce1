"""Which queue and priority a call goes to.

Precedence: the call's own option, then ``DJTASKS_TASK_ROUTES`` (exact name,
then the first matching glob), then the task's option, then
``DJTASKS_DEFAULT_QUEUE`` / ``DJTASKS_DEFAULT_PRIORITY``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from .conf import settings


def route_for(task_name: str) -> dict[str, Any]:
    """Return the ``{"queue": ..., "priority": ...}`` route for ``task_name`` (may be empty)."""
    routes = settings.TASK_ROUTES
    if not routes:
        return {}
    route = routes.get(task_name)
    if route is None:
        for pattern, candidate in routes.items():
            if fnmatchcase(task_name, pattern):
                route = candidate
                break
    if route is None:
        return {}
    if isinstance(route, str):
        return {"queue": route}
    return dict(route)


def resolve(
    task_name: str,
    call_queue: str | None,
    call_priority: int | None,
    task_queue: str | None,
    task_priority: int | None,
) -> tuple[str, int]:
    route = route_for(task_name) if call_queue is None or call_priority is None else {}
    queue = call_queue or route.get("queue") or task_queue or settings.DEFAULT_QUEUE
    if call_priority is not None:
        priority = call_priority
    elif route.get("priority") is not None:
        priority = route["priority"]
    elif task_priority is not None:
        priority = task_priority
    else:
        priority = settings.DEFAULT_PRIORITY
    return queue, priority
