"""``GET openapi.json``: the API described in OpenAPI 3.1.

The document is built here, by hand, next to the routes it describes; a
test checks that every route of :mod:`djtasks.api.urls` is in it, and
runs schemathesis against a live server with it.
"""

from __future__ import annotations

from typing import Any

from .. import __version__, states
from ..registry import tasks as registry

NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^/\u0000]+$"}
#: Queue names are stripped of surrounding blanks: a name of blanks is no name.
QUEUE_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "pattern": "^[^/\\s\u0000]([^/\u0000]*[^/\\s\u0000])?$",
}
SECONDS = {"type": "number", "minimum": 0, "maximum": 10_000_000}
WHEN = {
    "oneOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^[0-9]{1,11}(\\.[0-9]{1,6})?$"},
    ],
    "description": "an ISO 8601 time with a zone, or Unix seconds",
}
UUID = {"type": "string", "format": "uuid"}
TIME = {"type": ["string", "null"], "format": "date-time"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: bool | list[str] = True) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is True else (required or []),
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": ("bad input: the message says what", "BadRequest"),
    "401": ("no credentials, or a bad token", "Unauthorized"),
    "403": ("not staff, no permission, or a failed CSRF check", "Forbidden"),
    "404": ("no such task or worker", "NotFound"),
    "409": ("the task or worker is not in a state that allows this", "Conflict"),
    "504": ("the worker did not reply in time", "Timeout"),
}


def _operation(
    summary: str,
    ok: dict[str, Any],
    *,
    errors: tuple[str, ...] = (),
    params: list[dict[str, Any]] | None = None,
    body: str | None = None,
    public: bool = False,
    tag: str = "tasks",
    ok_status: str = "200",
    extra_ok: dict[str, Any] | None = None,
    description: str = "",
) -> dict[str, Any]:
    responses = {ok_status: ok, **(extra_ok or {})}
    codes = ("400",) + (() if public else ("401", "403")) + errors
    for code in codes:
        responses[code] = {"$ref": f"#/components/responses/{_ERRORS[code][1]}"}
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if public:
        op["security"] = []
    return op


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


TASK_ID = _path_param("task_id", UUID, "the task id")
WORKER = _path_param("name", NAME, "the worker's name (its --hostname)")
QUEUE = _path_param("name", QUEUE_NAME, "the queue's name")
TIMEOUT = {
    "type": "number",
    "minimum": 0,
    "maximum": 10,
    "description": "seconds to wait for the workers' replies (default 1)",
}


def _schemas() -> dict[str, Any]:
    task = _object(
        {
            "id": UUID,
            "name": {"type": "string"},
            "state": {
                "type": "string",
                "description": "as AsyncResult.state: a running "
                "task's custom state (e.g. PROGRESS) if it reported one",
            },
            "queue": {"type": "string"},
            "priority": {"type": "integer"},
            "worker": {"type": ["string", "null"]},
            "retries": {"type": "integer"},
            "created_at": TIME,
            "eta": TIME,
            "received_at": TIME,
            "started_at": TIME,
            "done_at": TIME,
            "runtime": {"type": ["number", "null"], "description": "seconds"},
            "exc_type": {"type": ["string", "null"]},
            "parent_id": _nullable(UUID),
            "root_id": _nullable(UUID),
            "group_id": _nullable(UUID),
        }
    )
    detail_extra = {
        "ready": {"type": "boolean"},
        "progress": {"type": ["object", "null"]},
        "args": {"type": ["array", "null"]},
        "kwargs": {"type": ["object", "null"]},
        "args_error": {"type": "string"},
        "argsrepr": {
            "type": "string",
            "description": "shown instead of args, which are then null (sensitive arguments)",
        },
        "kwargsrepr": {"type": "string", "description": "shown instead of kwargs"},
        "content_type": {"type": "string"},
        "headers": {"type": "object"},
        "expires": TIME,
        "acks_late": {"type": "boolean"},
        "ignore_result": {"type": "boolean"},
        "attempt": {"type": "integer"},
        "lease_expires": TIME,
        "unique_key": {"type": ["string", "null"]},
        "concurrency_key": {"type": ["string", "null"]},
        "result": {
            "description": "the return value (staff, or public_result tasks; finished tasks only)"
        },
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "traceback": {"type": ["string", "null"]},
    }
    detail = {
        "allOf": [
            _ref("Task"),
            _object(
                detail_extra,
                [
                    "ready",
                    "progress",
                    "args",
                    "kwargs",
                    "content_type",
                    "headers",
                    "expires",
                    "acks_late",
                    "ignore_result",
                    "attempt",
                    "lease_expires",
                    "unique_key",
                    "concurrency_key",
                ],
            ),
        ]
    }
    node = _object(
        {
            "id": UUID,
            "name": {"type": "string"},
            "state": {"type": "string"},
            "queue": {"type": "string"},
            "group_id": _nullable(UUID),
            "created_at": TIME,
            "done_at": TIME,
            "children": {"type": "array", "items": _ref("TreeNode")},
        }
    )
    worker = _object(
        {
            "name": {"type": "string"},
            "hostname": {"type": "string"},
            "pid": {"type": "integer"},
            "state": {"type": "string", "enum": ["online", "offline", "stopped"]},
            "online": {"type": "boolean"},
            "queues": {"type": "array", "items": {"type": "string"}},
            "concurrency": {"type": "integer"},
            "pool": {"type": "string"},
            "running": {"type": "integer", "description": "tasks it holds (claimed or running)"},
            "load": {"type": ["number", "null"], "description": "running / concurrency"},
            "processed": {"type": "integer"},
            "started_at": TIME,
            "last_heartbeat": TIME,
            "stopped_at": TIME,
        }
    )
    inspect = {
        "type": ["object", "null"],
        "description": "the worker's own answer (remote "
        "control); null when it is not online or inspect=0",
        "properties": {
            "active": {"type": ["array", "null"]},
            "reserved": {"type": ["array", "null"]},
            "registered": {"type": ["array", "null"], "items": {"type": "string"}},
            "error": {"type": "string"},
        },
    }
    queue = _object(
        {
            "name": {"type": "string"},
            "depth": {"type": "integer", "description": "tasks ready to run now"},
            "scheduled": {"type": "integer", "description": "tasks waiting for their eta"},
            "running": {"type": "integer", "description": "tasks claimed or running"},
            "oldest_waiting_age": {
                "type": ["number", "null"],
                "description": "seconds the oldest ready task has waited",
            },
            "paused": {"type": "boolean"},
            "paused_at": TIME,
            "paused_by": {"type": ["string", "null"]},
        }
    )
    reply = {"type": "object", "properties": {"ok": {}, "error": {"type": "string"}}}
    options = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "countdown": SECONDS,
            "eta": {"type": "string", "format": "date-time"},
            "expires": {
                "oneOf": [SECONDS, {"type": "string", "format": "date-time"}],
                "description": "seconds from now, or an ISO 8601 time",
            },
            "queue": QUEUE_NAME,
            "priority": {"type": "integer", "minimum": -100, "maximum": 100},
            "task_id": UUID,
            "headers": {"type": "object"},
            "ignore_result": {"type": "boolean"},
            "acks_late": {"type": "boolean"},
            "time_limit": {**SECONDS, "exclusiveMinimum": 0},
            "soft_time_limit": {**SECONDS, "exclusiveMinimum": 0},
            "unique_key": {"type": "string", "minLength": 1, "maxLength": 255},
            "unique_for": {**SECONDS, "exclusiveMinimum": 0},
        },
    }
    return {
        "Error": _object({"error": {"type": "string"}, "status": {"type": "integer"}}),
        "Task": task,
        "TaskDetail": detail,
        "TaskPage": _object(
            {
                "tasks": {"type": "array", "items": _ref("Task")},
                "ordering": {"type": "string", "enum": ["id", "created", "done"]},
                "next_cursor": {"type": ["string", "null"]},
                "next": {"type": ["string", "null"], "description": "the next page's URL"},
                "scanned_to": {
                    "type": ["string", "null"],
                    "description": "set when the page "
                    "stopped at the scan budget with fewer rows than asked",
                },
            }
        ),
        "TreeNode": node,
        "Tree": _object(
            {
                "id": UUID,
                "root_id": UUID,
                "count": {"type": "integer"},
                "truncated": {"type": "boolean"},
                "roots": {"type": "array", "items": _ref("TreeNode")},
            }
        ),
        "Worker": worker,
        "WorkerDetail": {"allOf": [_ref("Worker"), _object({"inspect": inspect})]},
        "WorkerList": _object({"workers": {"type": "array", "items": _ref("Worker")}}),
        "Queue": queue,
        "QueueList": _object({"queues": {"type": "array", "items": _ref("Queue")}}),
        "ApplyRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "args": {"type": "array"},
                "kwargs": {"type": "object"},
                "options": options,
            },
        },
        "Applied": _object(
            {
                "id": UUID,
                "name": {"type": "string"},
                "duplicate": {
                    "type": "boolean",
                    "description": "an unfinished task held the unique_key: its id is returned",
                },
                "url": {"type": "string"},
                "status_url": {"type": "string"},
            }
        ),
        "RevokeRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "terminate": {"type": "boolean", "description": "also kill it if it runs"},
                "timeout": TIMEOUT,
            },
        },
        "Revoked": _object(
            {
                "id": UUID,
                "outcome": {"type": "string", "enum": ["revoked", "terminated", "terminating"]},
                "worker": {"type": ["string", "null"]},
                "message": {"type": "string"},
            }
        ),
        "Retried": _object(
            {"id": UUID, "retry_of": UUID, "name": {"type": "string"}, "url": {"type": "string"}}
        ),
        "EmptyRequest": {"type": "object", "additionalProperties": False},
        "ControlRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"timeout": TIMEOUT},
        },
        "PoolRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "n": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
                "timeout": {**TIMEOUT, "exclusiveMinimum": 0, "minimum": 0.01},
            },
        },
        "WorkerControlRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"timeout": {**TIMEOUT, "minimum": 0.01}},
        },
        "QueueAction": _object(
            {
                "queue": {"type": "string"},
                "paused": {"type": "boolean"},
                "changed": {"type": "boolean"},
                "replies": {"type": "object", "additionalProperties": reply},
                "missing": {"type": "array", "items": {"type": "string"}},
            }
        ),
        "WorkerReply": _object(
            {"worker": {"type": "string"}, "command": {"type": "string"}, "reply": {}}
        ),
    }


def document(base_path: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``base_path`` is where ``djtasks.urls`` is mounted."""
    list_params = [
        _query(
            "state",
            {"type": "string", "enum": sorted(states.ALL_STATES)},
            "only tasks in this state; a final state orders the list by finish time",
        ),
        _query("name", NAME, "only this task name; orders the list by creation time"),
        _query("queue", {**NAME, "maxLength": 100}, "only this queue"),
        _query("worker", NAME, "only tasks claimed by this worker"),
        _query(
            "since", WHEN, "tasks finished (with a final state) or created (otherwise) since then"
        ),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            "tasks per page",
        ),
        _query(
            "cursor",
            {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[A-Za-z0-9_-]+$"},
            "next_cursor of the previous page (opaque: any other string is a 400)",
        ),
    ]
    tasks_doc = (
        "Newest first, a keyset page at a time. Filters not served by an index "
        "are checked on a bounded number of rows per page: follow `next` until "
        "it is null (a page may hold fewer tasks than `limit`)."
    )
    paths = {
        "/workers/": {
            "get": _operation(
                "Workers seen in the last day, online first",
                _json(_ref("WorkerList"), "the workers"),
                tag="workers",
            )
        },
        "/workers/{name}/": {
            "get": _operation(
                "One worker, with its active and reserved tasks and registered task names",
                _json(_ref("WorkerDetail"), "the worker"),
                errors=("404",),
                tag="workers",
                params=[
                    WORKER,
                    _query("timeout", TIMEOUT, "seconds to wait for its answer"),
                    _query(
                        "inspect",
                        {"type": "string", "enum": ["0", "1"]},
                        "0: do not ask the worker (remote control)",
                    ),
                ],
            )
        },
        "/workers/{name}/pool/grow/": {
            "post": _operation(
                "Add processes or threads to the worker's pool",
                _json(_ref("WorkerReply"), "the worker's reply"),
                errors=("404", "409", "504"),
                params=[WORKER],
                body="PoolRequest",
                tag="workers",
            )
        },
        "/workers/{name}/pool/shrink/": {
            "post": _operation(
                "Remove processes or threads from the worker's pool",
                _json(_ref("WorkerReply"), "the worker's reply"),
                errors=("404", "409", "504"),
                params=[WORKER],
                body="PoolRequest",
                tag="workers",
            )
        },
        "/workers/{name}/shutdown/": {
            "post": _operation(
                "Warm shutdown: the worker finishes its running tasks and exits",
                _json(_ref("WorkerReply"), "the worker's reply"),
                errors=("404", "409", "504"),
                params=[WORKER],
                body="WorkerControlRequest",
                tag="workers",
            )
        },
        "/tasks/": {
            "get": _operation(
                "Tasks, filtered",
                _json(_ref("TaskPage"), "a page"),
                params=list_params,
                description=tasks_doc,
            )
        },
        "/tasks/apply/{name}/": {
            "post": _operation(
                "Enqueue a call of a registered task",
                _json(_ref("Applied"), "enqueued"),
                ok_status="201",
                extra_ok={
                    "200": _json(_ref("Applied"), "an unfinished task already holds the unique_key")
                },
                errors=("409",),
                body="ApplyRequest",
                params=[
                    _path_param(
                        "name",
                        {"type": "string", "enum": registry.names()},
                        "a task name registered in this project; another is a 400",
                    )
                ],
                description="The arguments are checked against the task's signature (400 when "
                "they do not fit).",
            ),
        },
        "/tasks/{task_id}/": {
            "get": _operation(
                "One task; its result, error and traceback for staff",
                _json(_ref("TaskDetail"), "the task"),
                errors=("404",),
                params=[TASK_ID],
            )
        },
        "/tasks/{task_id}/tree/": {
            "get": _operation(
                "The workflow (canvas) the task belongs to, from its root",
                _json(_ref("Tree"), "the tree"),
                errors=("404",),
                params=[TASK_ID],
            )
        },
        "/tasks/{task_id}/revoke/": {
            "post": _operation(
                "Revoke a task that has not started; with terminate, kill it if it runs",
                _json(_ref("Revoked"), "revoked"),
                errors=("404", "409", "504"),
                params=[TASK_ID],
                body="RevokeRequest",
            )
        },
        "/tasks/{task_id}/retry/": {
            "post": _operation(
                "Enqueue a copy of a finished task (a new id; a retry_of header names this one)",
                _json(_ref("Retried"), "the copy"),
                ok_status="201",
                errors=("404", "409"),
                params=[TASK_ID],
                body="EmptyRequest",
            )
        },
        "/queues/": {
            "get": _operation(
                "Queues: depth, oldest waiting age, paused",
                _json(_ref("QueueList"), "the queues"),
                tag="queues",
            )
        },
        "/queues/{name}/pause/": {
            "post": _operation(
                "Stop every worker claiming from the queue",
                _json(_ref("QueueAction"), "paused"),
                params=[QUEUE],
                body="ControlRequest",
                tag="queues",
            )
        },
        "/queues/{name}/resume/": {
            "post": _operation(
                "Let workers claim from the queue again",
                _json(_ref("QueueAction"), "resumed"),
                params=[QUEUE],
                body="ControlRequest",
                tag="queues",
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus metrics (text format 0.0.4)",
                {
                    "description": "the metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                tag="monitoring",
            )
        },
        "/openapi.json": {
            "get": _operation(
                "This document",
                _json({"type": "object"}, "OpenAPI 3.1"),
                public=True,
                tag="monitoring",
            )
        },
    }
    responses = {name: _json(_ref("Error"), description) for description, name in _ERRORS.values()}
    for name in ("Unauthorized",):
        responses[name]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "djtasks",
            "version": __version__,
            "description": "Inspect and control the task queue. Authenticate with a staff "
            "user's session (unsafe methods then need the X-CSRFToken header) or with "
            "'Authorization: Bearer <token>' (DJTASKS_API_TOKENS). Reading needs "
            "djtasks.view_taskrecord; applying and retrying djtasks.add_taskrecord; "
            "revoking and controlling queues and workers djtasks.change_taskrecord.",
        },
        "servers": [{"url": base_path.rstrip("/") or "/"}],
        "security": [{"bearerAuth": []}, {"sessionAuth": []}],
        "tags": [{"name": n} for n in ("tasks", "workers", "queues", "monitoring")],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": responses,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token of DJTASKS_API_TOKENS",
                },
                "sessionAuth": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "sessionid",
                    "description": "the admin's login session (staff users)",
                },
            },
        },
    }
