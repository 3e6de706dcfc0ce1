"""JSON status views for the pages that start tasks (``include("djtasks.urls")``).

``GET status/<token>/`` describes one task; ``GET status/?id=<token>&id=…``
describes several in one request. A token is what
:meth:`AsyncResult.status_url() <djtasks.result.AsyncResult.status_url>` puts
in the URL: the task id signed with the project's ``SECRET_KEY``. Anything
else (an unsigned id, a tampered signature) is a 404, except for staff users,
who may use a plain task id.

The reply is ``{"id", "state", "ready", "progress"}``; ``result`` (and, for a
failure, ``error`` and ``traceback``) are added only for staff users or for
tasks declared with ``@task(public_result=True)``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import queue, serialization, states
from .exceptions import ContentDisallowed, DecodeError
from .models import TaskRecord
from .registry import tasks as registry
from .signing import normalize_task_id, unsign_task_id

#: Most tasks one bulk request may ask about.
BULK_LIMIT = 100

_FIELDS = (
    "id",
    "name",
    "state",
    "custom_state",
    "result",
    "result_content_type",
    "exc_type",
    "exc_message",
    "traceback",
)


@never_cache
@require_GET
def task_status(request: HttpRequest, token: str) -> JsonResponse:
    """One task's status, for the holder of its signed token (or staff)."""
    task_id = _task_id(request, token)
    row = _rows([task_id]).get(task_id)
    return JsonResponse(describe(task_id, row, _is_staff(request)), encoder=_Encoder)


@never_cache
@require_GET
def bulk_status(request: HttpRequest) -> JsonResponse:
    """Several tasks' status: ``?id=<token>&id=<token>…``, answered in that order."""
    tokens = request.GET.getlist("id")
    if not tokens:
        return JsonResponse({"error": "give one or more ?id=<status token>"}, status=400)
    if len(tokens) > BULK_LIMIT:
        return JsonResponse({"error": f"at most {BULK_LIMIT} ids per request"}, status=400)
    ids = [_task_id(request, token) for token in tokens]
    rows = _rows(ids)
    staff = _is_staff(request)
    return JsonResponse({"tasks": [describe(i, rows.get(i), staff) for i in ids]}, encoder=_Encoder)


def describe(task_id: str, row: dict[str, Any] | None, staff: bool) -> dict[str, Any]:
    """The JSON body for one task; ``row`` is ``None`` for an id with no row (PENDING)."""
    if row is None:
        return {"id": task_id, "state": states.PENDING, "ready": False, "progress": None}
    state = row["state"]
    if state == states.STARTED and row["custom_state"]:
        state = row["custom_state"]
    ready = state in states.READY_STATES
    task = registry._tasks.get(row["name"])
    full = staff or bool(task is not None and task.public_result)
    body: dict[str, Any] = {
        "id": task_id,
        "state": state,
        "ready": ready,
        "progress": _progress(row, state, full),
    }
    if not full or not ready:
        return body
    if state == states.SUCCESS:
        body["result"] = _decode(row["result_content_type"], row["result"])
    else:
        body["result"] = None
        body["error"] = {"type": row["exc_type"], "message": row["exc_message"]}
        body["traceback"] = row["traceback"] or None
    return body


def _progress(row: dict[str, Any], state: str, full: bool) -> dict[str, Any] | None:
    if state == states.SUCCESS:
        return {"percent": 100.0}
    if not row["custom_state"] or row["state"] != states.STARTED:
        return None
    meta = _decode(row["result_content_type"], row["result"])
    if not isinstance(meta, dict):
        return {"meta": meta} if full else None
    current, total = meta.get("current"), meta.get("total")
    numeric = (
        {"current": current, "total": total} if _is_number(current) and _is_number(total) else {}
    )
    if numeric and total > 0:
        numeric["percent"] = round(max(0.0, min(100.0, 100.0 * current / total)), 1)
    # Only the numbers are public; the rest of the meta is like a result.
    return {**meta, **numeric} if full else (numeric or None)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _decode(content_type: str, text: str | None) -> Any:
    try:
        return _finite(serialization.decode(content_type, text))
    except (ContentDisallowed, DecodeError):
        return None


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as the strings Python prints for them.

    A task may return ``float("nan")``; written as is, the reply would be
    invalid JSON (``NaN``) that a browser's ``JSON.parse`` refuses, and the
    page polling it would never learn the task had finished.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def _task_id(request: HttpRequest, token: str) -> str:
    task_id = unsign_task_id(token)
    if task_id is None and _is_staff(request):
        task_id = normalize_task_id(token)
    if task_id is None:
        raise Http404("no such task")
    return task_id


def _rows(ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = TaskRecord.objects.using(queue.db_alias()).filter(pk__in=set(ids)).values(*_FIELDS)
    return {str(row["id"]): row for row in rows}


class _Encoder(DjangoJSONEncoder):
    """Django's encoder, plus the types a JSON result may decode to; anything
    else shows as its ``repr`` rather than failing the whole reply."""

    def default(self, o: Any) -> Any:
        if isinstance(o, set | frozenset):
            return sorted(o, key=repr)
        if isinstance(o, bytes):
            return o.decode("utf-8", "replace")
        try:
            return super().default(o)
        except TypeError:
            return repr(o)
