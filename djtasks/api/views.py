"""The API's routes (see :mod:`djtasks.api.urls`); each is thin: parse, call, shape.

Writes go through the functions the admin and ``taskctl`` use: a retry is
the admin's copy of the row, a revoke is :func:`djtasks.control.revoke`,
pausing and pool changes are :mod:`djtasks.control` commands to the workers.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from urllib.parse import urlencode

from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import control, states
from ..exceptions import DjtasksError, DuplicateTask
from ..ids import uuid7
from ..registry import tasks as registry
from ..signing import normalize_task_id
from ..views import _Encoder
from . import metrics as metrics_module
from . import openapi as openapi_module
from . import reads
from .auth import ApiError, can_see_results, endpoint, json_body, unknown_keys
from .pagination import Filters, task_page

#: Tasks per page of the list: the default and the most.
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
#: Seconds to wait for workers' replies: the default and the most.
DEFAULT_TIMEOUT, MAX_TIMEOUT = 1.0, 10.0
#: ``POST tasks/apply/<name>/`` options, passed to ``apply_async``.
APPLY_OPTIONS = (
    "countdown",
    "eta",
    "expires",
    "queue",
    "priority",
    "task_id",
    "headers",
    "ignore_result",
    "acks_late",
    "time_limit",
    "soft_time_limit",
    "unique_key",
    "unique_for",
)


def _json(body: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, encoder=_Encoder)


def _allow_control(view: Any) -> Any:
    # Remote control waits for workers to see a committed command, so these
    # views must not run inside ATOMIC_REQUESTS's transaction.
    view._non_atomic_requests = set(django_settings.DATABASES)
    return view


# -- input ----------------------------------------------------------------------------


def _text(value: str, what: str, limit: int = 255) -> str:
    """A name from the URL or the query: 1 to ``limit`` characters, no NUL
    (which PostgreSQL cannot store, so could never match)."""
    if not value or len(value) > limit or "\x00" in value:
        raise ApiError(400, f"{what} must have 1 to {limit} characters, and no NUL")
    return value


def _task_id(raw: str) -> str:
    task_id = normalize_task_id(raw)
    if task_id is None:
        raise ApiError(400, f"{raw!r} is not a task id (a UUID)")
    return task_id


def _parse_iso(value: str) -> dt.datetime | None:
    if "\x00" in value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        pass
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _when(value: Any, what: str) -> dt.datetime:
    """An aware datetime from an ISO 8601 string with a zone, or Unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            seconds = None
        if seconds is None:
            parsed = _parse_iso(value)
            if parsed is None:
                raise ApiError(
                    400,
                    f"{what} must be an ISO 8601 time with a time zone, or "
                    f"Unix seconds, not {value!r}",
                )
            if timezone.is_naive(parsed):
                raise ApiError(
                    400, f"{what} needs a time zone (e.g. 2025-01-31T12:00:00Z), not {value!r}"
                )
            return parsed
    else:
        raise ApiError(400, f"{what} must be an ISO 8601 time or Unix seconds")
    if not math.isfinite(seconds) or not 0 <= seconds < 253402300800:
        raise ApiError(400, f"{what} is out of range: {value!r}")
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def _number(value: Any, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError(400, f"{what} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise ApiError(400, f"{what} must be a number, not {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ApiError(400, f"{what} must be from {low:g} to {high:g}, not {value!r}")
    return number


def _timeout(body: dict[str, Any], low: float = 0.0) -> float:
    if "timeout" not in body:
        return DEFAULT_TIMEOUT
    return _number(body["timeout"], "timeout", low, MAX_TIMEOUT)


def _single(request: HttpRequest, name: str) -> str | None:
    values = request.GET.getlist(name)
    if len(values) > 1:
        raise ApiError(400, f"give {name} once")
    if not values:
        return None
    return _text(values[0], name)


def _by(request: HttpRequest) -> str:
    return f"api:{request.api_user}"  # type: ignore[attr-defined]


# -- tasks ----------------------------------------------------------------------------

LIST_PARAMS = ("state", "name", "queue", "worker", "since", "limit", "cursor")


@endpoint(["GET"], "view")
def task_list(request: HttpRequest) -> HttpResponse:
    unknown_keys(request.GET, LIST_PARAMS, "query parameter(s)")
    state = _single(request, "state")
    if state is not None and state not in states.ALL_STATES:
        raise ApiError(
            400, f"state must be one of {', '.join(sorted(states.ALL_STATES))}, not {state!r}"
        )
    since = _single(request, "since")
    limit_raw = _single(request, "limit")
    limit = DEFAULT_LIMIT
    if limit_raw is not None:
        if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_LIMIT:
            raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(limit_raw)
    filters = Filters(
        state=state,
        name=_single(request, "name"),
        queue=_single(request, "queue"),
        worker=_single(request, "worker"),
        since=_when(since, "since") if since is not None else None,
    )
    page = task_page(reads.tasks(), filters, limit, _single(request, "cursor"), reads.LIST_FIELDS)
    next_url = None
    if page.cursor is not None:
        query = {k: v for k, v in request.GET.items() if k != "cursor"}
        next_url = request.build_absolute_uri(
            f"{request.path}?{urlencode({**query, 'cursor': page.cursor})}"
        )
    return _json(
        {
            "tasks": [reads.task_json(row) for row in page.rows],
            "ordering": page.ordering,
            "next_cursor": page.cursor,
            "next": next_url,
            "scanned_to": str(page.scanned_to) if page.scanned_to is not None else None,
        }
    )


@endpoint(["GET"], "view")
def task_detail(request: HttpRequest, task_id: str) -> HttpResponse:
    task_id = _task_id(task_id)
    body = reads.task_detail(task_id, can_see_results(request.api_user))  # type: ignore[attr-defined]
    if body is None:
        raise ApiError(404, f"no task with id {task_id}")
    return _json(body)


@endpoint(["GET"], "view")
def task_tree(request: HttpRequest, task_id: str) -> HttpResponse:
    task_id = _task_id(task_id)
    tree = reads.task_tree(task_id)
    if tree is None:
        raise ApiError(404, f"no task with id {task_id}")
    return _json(tree)


@endpoint(["POST"], "add")
def task_apply(request: HttpRequest, name: str) -> HttpResponse:
    body = json_body(request)
    unknown_keys(body, ("args", "kwargs", "options"), "field(s)")
    task = registry._tasks.get(_text(name, "the task name"))
    if task is None:
        raise ApiError(
            400, f"unknown task {name!r}: no task of that name is registered in this project"
        )
    args, kwargs = body.get("args", []), body.get("kwargs", {})
    options = body.get("options", {})
    if not isinstance(args, list):
        raise ApiError(400, "args must be a JSON array")
    if not isinstance(kwargs, dict):
        raise ApiError(400, "kwargs must be a JSON object")
    if not isinstance(options, dict):
        raise ApiError(400, "options must be a JSON object")
    unknown_keys(options, APPLY_OPTIONS, "option(s)")
    options = dict(options)
    for key in ("eta", "expires"):
        if isinstance(options.get(key), str):
            options[key] = _when(options[key], key)
    wanted = options.pop("task_id", None)
    wanted = _task_id(str(wanted)) if wanted is not None else str(uuid7())
    try:
        result = task.apply_async(args, kwargs, task_id=wanted, **options)
    except DuplicateTask as exc:
        raise ApiError(409, str(exc)) from None
    except (TypeError, ValueError, DjtasksError) as exc:
        raise ApiError(400, f"{type(exc).__name__}: {exc}") from None
    task_url = reverse("djtasks:api-task", args=[result.id])
    response = _json(
        {
            "id": str(result.id),
            "name": name,
            "duplicate": str(result.id) != wanted,
            "url": request.build_absolute_uri(task_url),
            "status_url": request.build_absolute_uri(result.status_url()),
        },
        status=200 if str(result.id) != wanted else 201,
    )
    response["Location"] = task_url
    return response


@_allow_control
@endpoint(["POST"], "change")
def task_revoke(request: HttpRequest, task_id: str) -> HttpResponse:
    task_id = _task_id(task_id)
    body = json_body(request)
    unknown_keys(body, ("terminate", "timeout"), "field(s)")
    terminate = body.get("terminate", False)
    if not isinstance(terminate, bool):
        raise ApiError(400, "terminate must be true or false")
    try:
        report = control.revoke(
            [task_id],
            terminate,
            _timeout(body),
            reason=f"revoked through the API by {request.api_user}",
        )  # type: ignore[attr-defined]
    except control.RemoteControlError as exc:
        raise ApiError(400, str(exc)) from None
    if task_id in report.revoked:
        return _json(
            {
                "id": task_id,
                "outcome": "revoked",
                "worker": None,
                "message": "revoked: it had not started and will not run",
            }
        )
    if task_id in report.terminated:
        worker = report.terminated[task_id]
        return _json(
            {
                "id": task_id,
                "outcome": "terminated",
                "worker": worker,
                "message": f"killed on {worker}; it ends REVOKED",
            }
        )
    if task_id in report.terminating:
        worker = report.terminating[task_id]
        return _json(
            {
                "id": task_id,
                "outcome": "terminating",
                "worker": worker,
                "message": f"waiting in a busy child of {worker}: killed as soon as it starts",
            }
        )
    why = report.failed.get(task_id, "not revoked")
    if why == "no task with this id":
        raise ApiError(404, f"no task with id {task_id}")
    if "did not reply" in why:
        raise ApiError(504, f"not revoked: {why}")
    raise ApiError(409, f"not revoked: {why}")


@endpoint(["POST"], "add")
def task_retry(request: HttpRequest, task_id: str) -> HttpResponse:
    from .. import queue
    from ..admin.task_admin import TaskRecordAdmin

    task_id = _task_id(task_id)
    unknown_keys(json_body(request), (), "field(s)")
    fields = (
        "name",
        "queue",
        "priority",
        "content_type",
        "payload",
        "headers",
        "acks_late",
        "ignore_result",
        "parent_id",
        "root_id",
        "concurrency_key",
        "state",
    )
    row = reads.tasks().filter(pk=task_id).values("pk", *fields).first()
    if row is None:
        raise ApiError(404, f"no task with id {task_id}")
    if row["state"] not in states.READY_STATES:
        raise ApiError(
            409,
            f"only a finished task (SUCCESS, FAILURE, REVOKED) can be "
            f"retried; this one is {row['state']}",
        )
    # The admin's retry: a copy with a new id whose headers name the original.
    message = TaskRecordAdmin._copy(row, timezone.now())
    queue.enqueue([message])
    task_url = reverse("djtasks:api-task", args=[message.id])
    response = _json(
        {
            "id": str(message.id),
            "retry_of": task_id,
            "name": row["name"],
            "url": request.build_absolute_uri(task_url),
        },
        status=201,
    )
    response["Location"] = task_url
    return response


# -- queues ---------------------------------------------------------------------------


@endpoint(["GET"], "view")
def queue_list(request: HttpRequest) -> HttpResponse:
    unknown_keys(request.GET, (), "query parameter(s)")
    return _json({"queues": reads.queues(timezone.now())})


def _nobody_online() -> bool:
    return not any(w.state == control.ONLINE for w in control.status())


def _queue_action(request: HttpRequest, name: str, pause: bool) -> HttpResponse:
    name = _text(name, "the queue name", 100)
    body = json_body(request)
    unknown_keys(body, ("timeout",), "field(s)")
    # No worker to tell: store the change and return at once (workers read it when they start).
    timeout = _timeout(body)
    if _nobody_online():
        timeout = 0.0
    try:
        if pause:
            changed, replies = control.pause(name, _by(request), timeout)
        else:
            changed, replies = control.resume(name, timeout)
    except control.RemoteControlError as exc:
        raise ApiError(400, str(exc)) from None
    return _json(
        {
            "queue": name.strip(),
            "paused": pause,
            "changed": changed,
            "replies": {w: r.as_json() for w, r in replies.replies.items()},
            "missing": replies.missing,
        }
    )


@_allow_control
@endpoint(["POST"], "change")
def queue_pause(request: HttpRequest, name: str) -> HttpResponse:
    return _queue_action(request, name, pause=True)


@_allow_control
@endpoint(["POST"], "change")
def queue_resume(request: HttpRequest, name: str) -> HttpResponse:
    return _queue_action(request, name, pause=False)


# -- workers --------------------------------------------------------------------------


@endpoint(["GET"], "view")
def worker_list(request: HttpRequest) -> HttpResponse:
    unknown_keys(request.GET, (), "query parameter(s)")
    return _json({"workers": reads.workers()})


@_allow_control
@endpoint(["GET"], "view")
def worker_detail(request: HttpRequest, name: str) -> HttpResponse:
    unknown_keys(request.GET, ("timeout", "inspect"), "query parameter(s)")
    timeout = DEFAULT_TIMEOUT
    if "timeout" in request.GET:
        timeout = _number(request.GET["timeout"], "timeout", 0.0, MAX_TIMEOUT)
    ask = request.GET.get("inspect", "1")
    if ask not in ("0", "1"):
        raise ApiError(400, "inspect must be 0 or 1")
    body = reads.worker(_text(name, "the worker name"))
    if body is None:
        raise ApiError(404, f"no worker named {name!r}")
    body["inspect"] = _inspect(name, timeout) if ask == "1" and body["online"] else None
    return _json(body)


def _inspect(name: str, timeout: float) -> dict[str, Any]:
    """Ask the worker for its tasks and task names; stop at the first silence."""
    found: dict[str, Any] = {}
    for method in ("active", "reserved", "registered"):
        try:
            replies = control.inspect(method, [name], timeout)
        except control.RemoteControlError as exc:
            return {**found, "error": str(exc)}
        reply = replies.replies.get(name)
        if reply is None:
            return {**found, "error": f"{name} did not reply within {timeout:g} s"}
        found[method] = reply.value if reply.ok else None
        if not reply.ok:
            return {**found, "error": reply.error}
    return found


def _worker_command(request: HttpRequest, name: str, command: str) -> HttpResponse:
    body = json_body(request)
    takes_n = command in ("pool_grow", "pool_shrink")
    unknown_keys(body, ("n", "timeout") if takes_n else ("timeout",), "field(s)")
    worker = reads.worker(_text(name, "the worker name"))
    if worker is None:
        raise ApiError(404, f"no worker named {name!r}")
    if not worker["online"]:
        raise ApiError(409, f"worker {name} is {worker['state']}: it cannot act on commands")
    timeout = _timeout(body, low=0.01)  # the reply is the point
    try:
        if takes_n:
            n = body.get("n", 1)
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
                raise ApiError(400, "n must be a whole number from 1 to 1000")
            replies = getattr(control, command)(n, [name], timeout)
        else:
            replies = control.shutdown([name], timeout)
    except control.RemoteControlError as exc:
        raise ApiError(400, str(exc)) from None
    reply = replies.replies.get(name)
    if reply is None:
        raise ApiError(504, f"{name} did not reply within {timeout:g} s")
    if not reply.ok:
        raise ApiError(409, f"{name}: {reply.error}")
    return _json({"worker": name, "command": command, "reply": reply.value})


@_allow_control
@endpoint(["POST"], "change")
def worker_pool_grow(request: HttpRequest, name: str) -> HttpResponse:
    return _worker_command(request, name, "pool_grow")


@_allow_control
@endpoint(["POST"], "change")
def worker_pool_shrink(request: HttpRequest, name: str) -> HttpResponse:
    return _worker_command(request, name, "pool_shrink")


@_allow_control
@endpoint(["POST"], "change")
def worker_shutdown(request: HttpRequest, name: str) -> HttpResponse:
    return _worker_command(request, name, "shutdown")


# -- description and metrics ------------------------------------------------------------


@endpoint(["GET"], None)
def openapi(request: HttpRequest) -> HttpResponse:
    base = reverse("djtasks:api-openapi").rsplit("/", 1)[0]
    return _json(openapi_module.document(base or "/"))


@endpoint(["GET"], "view")
def metrics(request: HttpRequest) -> HttpResponse:
    unknown_keys(request.GET, (), "query parameter(s)")
    return HttpResponse(
        metrics_module.render(timezone.now()), content_type=metrics_module.CONTENT_TYPE
    )
