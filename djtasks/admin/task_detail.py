"""What a task's admin page shows: decoded values, a timeline, workflow links."""

from __future__ import annotations

import datetime as dt
import json
import pprint
from typing import Any

from django.urls import reverse
from django.utils import timezone

from .. import controls, dashboard, redaction, serialization, states
from ..dashboard import duration
from ..exceptions import ContentDisallowed, DecodeError
from ..models import TaskRecord
from ..registry import tasks as registry
from ..signing import normalize_task_id
from .task_list import shown_state

#: The header a copy made by the admin's *Retry* carries: the id of the task it copies.
RETRY_OF_HEADER = "retry_of"


def _pretty(value: Any) -> str:
    return pprint.pformat(value, width=100, sort_dicts=False)


def task_url(task_id: Any) -> str:
    return reverse("admin:djtasks_taskrecord_change", args=[str(task_id)])


def _decoded(content_type: str, text: str | None) -> tuple[Any, str | None]:
    """``(value, None)`` or ``(None, why it could not be decoded)``."""
    try:
        return serialization.decode(content_type, text), None
    except (ContentDisallowed, DecodeError) as exc:
        return None, str(exc)


def _timeline(task: TaskRecord) -> list[dict[str, Any]]:
    steps = [("Enqueued", task.created_at, "")]
    if task.eta and task.eta - task.created_at > dt.timedelta(seconds=1):
        steps.append(
            ("Due (eta)", task.eta, f"retry {task.retries}" if task.retries else "countdown or eta")
        )
    if task.received_at:
        steps.append(("Received", task.received_at, f"by {task.worker}" if task.worker else ""))
    if task.started_at:
        steps.append(
            ("Started", task.started_at, task.custom_state and f"now reporting {task.custom_state}")
        )
    if task.done_at:
        steps.append(
            (
                task.state.capitalize(),
                task.done_at,
                f"ran {duration(task.runtime)}" if task.runtime is not None else "",
            )
        )
    steps.sort(key=lambda s: s[1])
    out = []
    previous = None
    for label, when, note in steps:
        gap = None if previous is None else duration((when - previous).total_seconds())
        out.append({"label": label, "when": when, "gap": gap, "note": note})
        previous = when
    return out


def related(task: TaskRecord) -> dict[str, Any]:
    """The task's children and group, read through primary-key ranges.

    There is no index on ``parent_id`` or ``group_id``; task ids are UUIDv7,
    so children (enqueued while this task ran, or when it ended) and group
    members (enqueued together) are found between two ids, a range scan of
    the primary key. Children made with ids of their own (not UUIDv7) are not
    listed.
    """
    limit = 50
    fields = ("id", "name", "state", "custom_state", "created_at")
    out: dict[str, Any] = {"children": [], "group": [], "limit": limit}
    created = task.created_at
    until = min(task.done_at or timezone.now(), created + dashboard.DAY)
    children = (
        dashboard.tasks()
        .filter(
            parent_id=task.id,
            pk__gte=dashboard.uuid7_floor(created - dt.timedelta(seconds=1)),
            pk__lt=dashboard.uuid7_floor(until + dt.timedelta(minutes=5)),
        )
        .order_by("pk")
        .values(*fields)[: limit + 1]
    )
    out["children"] = list(children)
    if task.group_id:
        window = dt.timedelta(minutes=10)
        members = (
            dashboard.tasks()
            .filter(
                group_id=task.group_id,
                pk__gte=dashboard.uuid7_floor(created - window),
                pk__lt=dashboard.uuid7_floor(created + window),
            )
            .order_by("pk")
            .values(*fields)[: limit + 1]
        )
        out["group"] = list(members)
    for row in out["children"] + out["group"]:
        row["shown_state"] = shown_state(row)
    return out


def _result_label(task: TaskRecord) -> str:
    if task.state in (states.SUCCESS, states.PENDING):
        return "Result"
    if task.state == states.STARTED and task.custom_state:
        return "Progress"
    # A failure (or a retry) keeps what the task last stored: its progress meta.
    return "Last reported progress"


def task_details(task: TaskRecord, user: Any) -> dict[str, Any]:
    """Context for the detail page: decoded values, timeline, links, controls."""
    args: Any = None
    kwargs: Any = None
    args_error = None
    hidden = redaction.shown(task.headers)
    if hidden is None:
        try:
            args, kwargs = serialization.decode_arguments(task.content_type, task.payload)
        except (ContentDisallowed, DecodeError) as exc:
            args_error = str(exc)
    result, result_error = (None, None)
    if task.result is not None:
        result, result_error = _decoded(task.result_content_type, task.result)
    headers = dict(task.headers or {})
    retry_of = normalize_task_id(headers.get(RETRY_OF_HEADER))
    row = {"id": str(task.id), "state": task.state, "name": task.name}
    registered = registry._tasks.get(task.name)
    return {
        "state_shown": shown_state(task),
        "finished": task.state in states.READY_STATES,
        # Sensitive arguments: their argsrepr/kwargsrepr, never the payload.
        "args_text": hidden[0] if hidden else None if args is None else _pretty(args),
        "kwargs_text": hidden[1] if hidden else None if kwargs is None else _pretty(kwargs),
        "args_error": args_error,
        "raw_payload": task.payload if args_error else None,
        "result_label": _result_label(task),
        "result_text": None if task.result is None or result_error else _pretty(result),
        "result_error": result_error,
        "headers_text": json.dumps(headers, indent=2, sort_keys=True, default=str)
        if headers
        else None,
        "retry_of": retry_of,
        "timeline": _timeline(task),
        "runtime_text": duration(task.runtime),
        "lease_left": duration((task.lease_expires - timezone.now()).total_seconds())
        if task.lease_expires and task.state in (states.RECEIVED, states.STARTED)
        else "",
        "registered": registered is not None,
        "public_result": bool(registered and registered.public_result),
        "parent_url": task_url(task.parent_id) if task.parent_id else None,
        "root_url": task_url(task.root_id)
        if task.root_id and task.root_id not in (task.id, task.parent_id)
        else None,
        "task_controls": controls.for_target("task", user, row),
        "related": related(task),
    }
