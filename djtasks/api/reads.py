"""The API's read queries, each served by an index, and the JSON shape of a task.

What they read (see the indexes on :class:`~djtasks.models.TaskRecord`):

- waiting rows (PENDING, RETRY) and held rows (RECEIVED, STARTED): the size
  of the backlog, not of the history;
- finished rows of a bounded window, through ``(state, done_at)``;
- rows created since a time, through the primary key (task ids are UUIDv7);
- a workflow, through the partial ``parent_id`` and ``group_id`` indexes;
- worker and paused-queue rows (a few).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Min, Q, QuerySet

from .. import control, queue, redaction, serialization, states
from ..dashboard import QueueDepth
from ..exceptions import ContentDisallowed, DecodeError
from ..models import PausedQueue, TaskRecord
from ..views import describe

#: Fields of a task in the list.
LIST_FIELDS = (
    "id",
    "name",
    "state",
    "custom_state",
    "queue",
    "priority",
    "worker",
    "retries",
    "created_at",
    "eta",
    "received_at",
    "started_at",
    "done_at",
    "runtime",
    "exc_type",
    "parent_id",
    "root_id",
    "group_id",
)
#: More fields for one task's page.
DETAIL_FIELDS = (
    *LIST_FIELDS,
    "content_type",
    "payload",
    "headers",
    "expires",
    "acks_late",
    "ignore_result",
    "attempt",
    "lease_expires",
    "unique_key",
    "concurrency_key",
    "result",
    "result_content_type",
    "exc_message",
    "traceback",
)
#: Most tasks a workflow tree shows.
TREE_LIMIT = 1000
_HELD = (states.RECEIVED, states.STARTED)


def tasks() -> QuerySet[TaskRecord]:
    return TaskRecord.objects.using(queue.db_alias())


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _id(value: Any) -> str | None:
    return str(value) if value is not None else None


def shown_state(row: dict[str, Any]) -> str:
    """The state ``AsyncResult.state`` reports: a running task's custom state, if any."""
    if row["state"] == states.STARTED and row.get("custom_state"):
        return row["custom_state"]
    return row["state"]


def task_json(row: dict[str, Any]) -> dict[str, Any]:
    """A task of the list: where it is and how it went, not its data."""
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "state": shown_state(row),
        "queue": row["queue"],
        "priority": row["priority"],
        "worker": row["worker"] or None,
        "retries": row["retries"],
        "created_at": _iso(row["created_at"]),
        "eta": _iso(row["eta"]),
        "received_at": _iso(row["received_at"]),
        "started_at": _iso(row["started_at"]),
        "done_at": _iso(row["done_at"]),
        "runtime": row["runtime"],
        "exc_type": row["exc_type"] or None,
        "parent_id": _id(row["parent_id"]),
        "root_id": _id(row["root_id"]),
        "group_id": _id(row["group_id"]),
    }


def task_detail(task_id: str, full: bool) -> dict[str, Any] | None:
    """Everything about one task; its result, error and traceback only if ``full``
    (or if the task is declared ``public_result``), as the status views decide."""
    row = tasks().filter(pk=task_id).values(*DETAIL_FIELDS).first()
    if row is None:
        return None
    body = task_json(row)
    status = describe(task_id, row, full)
    hidden = redaction.shown(row["headers"])
    if hidden is not None:
        # Sensitive arguments: what the call chose to show, never the payload.
        decoded: dict[str, Any] = {
            "args": None,
            "kwargs": None,
            "argsrepr": hidden[0],
            "kwargsrepr": hidden[1],
        }
    else:
        try:
            args, kwargs = serialization.decode_arguments(row["content_type"], row["payload"])
            decoded = {"args": args, "kwargs": kwargs}
        except (ContentDisallowed, DecodeError) as exc:
            decoded = {"args": None, "kwargs": None, "args_error": str(exc)}
    body.update(
        {
            "ready": status["ready"],
            "progress": status["progress"],
            **decoded,
            "content_type": row["content_type"],
            "headers": row["headers"] or {},
            "expires": _iso(row["expires"]),
            "acks_late": row["acks_late"],
            "ignore_result": row["ignore_result"],
            "attempt": row["attempt"],
            "lease_expires": _iso(row["lease_expires"]),
            "unique_key": row["unique_key"],
            "concurrency_key": row["concurrency_key"],
        }
    )
    for key in ("result", "error", "traceback"):
        if key in status:
            body[key] = status[key]
    return body


# -- the workflow tree ---------------------------------------------------------------


_TREE_FIELDS = (
    "id",
    "name",
    "state",
    "custom_state",
    "queue",
    "parent_id",
    "root_id",
    "group_id",
    "created_at",
    "done_at",
)


def task_tree(task_id: str) -> dict[str, Any] | None:
    """The workflow ``task_id`` belongs to, from its root down.

    Children are the rows whose ``parent_id`` is a node (chain steps, callbacks,
    tasks a task called, a chord's body); members of a group are found by its
    ``group_id``, so a group called from outside any task, which has no
    parent, shows as several roots. At most :data:`TREE_LIMIT` nodes.
    """
    start = tasks().filter(pk=task_id).values(*_TREE_FIELDS).first()
    if start is None:
        return None
    root_id = start["root_id"] or start["id"]
    nodes: dict[str, dict[str, Any]] = {}
    root = (
        start
        if root_id == start["id"]
        else (tasks().filter(pk=root_id).values(*_TREE_FIELDS).first() or start)
    )
    frontier = [root]
    seen_groups: set[Any] = set()
    truncated = False
    while frontier:
        found = []
        for row in frontier:
            key = str(row["id"])
            if key in nodes:
                continue
            if len(nodes) >= TREE_LIMIT:
                truncated = True
                break
            nodes[key] = row
            found.append(row)
        groups = {
            r["group_id"] for r in found if r["group_id"] and r["group_id"] not in seen_groups
        }
        seen_groups |= groups
        ids = [r["id"] for r in found]
        if not ids or truncated:
            break
        condition = Q(parent_id__in=ids)
        if groups:
            condition |= Q(group_id__in=groups)
        frontier = list(
            tasks().filter(condition).order_by("id").values(*_TREE_FIELDS)[: TREE_LIMIT + 1]
        )
    children: dict[str, list[str]] = defaultdict(list)
    for key, row in nodes.items():
        parent = _id(row["parent_id"])
        if parent in nodes and parent != key:
            children[parent].append(key)
    roots = [k for k, row in nodes.items() if _id(row["parent_id"]) not in nodes]

    def node(key: str, depth: int) -> dict[str, Any]:
        row = nodes[key]
        return {
            "id": key,
            "name": row["name"],
            "state": shown_state(row),
            "queue": row["queue"],
            "group_id": _id(row["group_id"]),
            "created_at": _iso(row["created_at"]),
            "done_at": _iso(row["done_at"]),
            "children": [node(c, depth + 1) for c in sorted(children[key])] if depth < 100 else [],
        }

    return {
        "id": str(start["id"]),
        "root_id": str(root_id),
        "count": len(nodes),
        "truncated": truncated,
        "roots": [node(k, 0) for k in sorted(roots)],
    }


# -- queues and workers -----------------------------------------------------------------


@dataclass
class Unfinished:
    """The backlog now: depths per queue, and counts per (state, queue, name)."""

    queues: dict[str, QueueDepth]
    by_state: dict[tuple[str, str, str], int]  # (state, queue, name) → tasks
    running_by_worker: dict[str, int]
    claimed_since: dict[tuple[str, str], int] = field(default_factory=dict)


def unfinished(now: dt.datetime, claimed_since: dt.datetime | None = None) -> Unfinished:
    """Waiting and held rows, grouped (two queries over the backlog), and the
    paused queues. With ``claimed_since``, also the held rows claimed since
    then, by (queue, name)."""
    queues: dict[str, QueueDepth] = {}
    by_state: dict[tuple[str, str, str], int] = defaultdict(int)

    def depth(name: str) -> QueueDepth:
        return queues.setdefault(name, QueueDepth(name))

    waiting = (
        tasks()
        .filter(state__in=states.WAITING_STATES)
        .values("queue", "state", "name")
        .annotate(
            ready=Count("pk", filter=Q(eta__lte=now)),
            scheduled=Count("pk", filter=Q(eta__gt=now)),
            oldest=Min("eta", filter=Q(eta__lte=now)),
        )
        .order_by()
    )
    for row in waiting:
        q = depth(row["queue"])
        q.ready += row["ready"]
        q.scheduled += row["scheduled"]
        if row["oldest"] is not None and (q.oldest_eta is None or row["oldest"] < q.oldest_eta):
            q.oldest_eta = row["oldest"]
        by_state[(row["state"], row["queue"], row["name"])] += row["ready"] + row["scheduled"]
    running: dict[str, int] = defaultdict(int)
    claimed: dict[tuple[str, str], int] = defaultdict(int)
    annotations: dict[str, Any] = {"n": Count("pk")}
    if claimed_since is not None:
        annotations["recent"] = Count("pk", filter=Q(received_at__gte=claimed_since))
    held = (
        tasks()
        .filter(state__in=_HELD)
        .values("queue", "state", "name", "worker")
        .annotate(**annotations)
        .order_by()
    )
    for row in held:
        depth(row["queue"]).running += row["n"]
        running[row["worker"]] += row["n"]
        by_state[(row["state"], row["queue"], row["name"])] += row["n"]
        if claimed_since is not None:
            claimed[(row["queue"], row["name"])] += row["recent"]
    for name in queue.paused_queues():
        depth(name).paused = True
    return Unfinished(queues, dict(by_state), dict(running), dict(claimed))


def queue_json(q: QueueDepth, now: dt.datetime, paused: dict[str, Any]) -> dict[str, Any]:
    row = paused.get(q.name)
    return {
        "name": q.name,
        "depth": q.ready,
        "scheduled": q.scheduled,
        "running": q.running,
        "oldest_waiting_age": q.oldest_age(now),
        "paused": q.paused,
        "paused_at": _iso(row.paused_at) if row else None,
        "paused_by": (row.paused_by or None) if row else None,
    }


def queues(now: dt.datetime) -> list[dict[str, Any]]:
    state = unfinished(now)
    paused = {p.name: p for p in PausedQueue.objects.using(queue.db_alias())}
    return [queue_json(q, now, paused) for q in sorted(state.queues.values(), key=lambda q: q.name)]


def worker_json(w: control.WorkerStatus, running: int) -> dict[str, Any]:
    return {
        "name": w.name,
        "hostname": w.hostname,
        "pid": w.pid,
        "state": w.state,
        "online": w.state == control.ONLINE,
        "queues": w.queues,
        "concurrency": w.concurrency,
        "pool": w.pool,
        "running": running,
        "load": round(running / w.concurrency, 3) if w.concurrency else None,
        "processed": w.processed,
        "started_at": _iso(w.started_at),
        "last_heartbeat": _iso(w.last_seen),
        "stopped_at": _iso(w.stopped_at),
    }


def running_by_worker(names: list[str] | None = None) -> dict[str, int]:
    """Rows each worker holds (claimed or running): one read of the held index."""
    qs = tasks().filter(state__in=_HELD)
    if names is not None:
        qs = qs.filter(worker__in=names)
    return dict(qs.values_list("worker").annotate(n=Count("pk")).order_by())


def workers(now: dt.datetime | None = None) -> list[dict[str, Any]]:
    found = control.status(now)
    running = running_by_worker()
    return [worker_json(w, running.get(w.name, 0)) for w in found]


def worker(name: str) -> dict[str, Any] | None:
    from ..models import Worker

    row = Worker.objects.using(queue.db_alias()).filter(pk=name).first()
    if row is None:
        return None
    found = next((w for w in control.status() if w.name == name), None)
    if found is None:  # status() leaves out workers stopped long ago
        found = control.WorkerStatus(
            row.name,
            control.STOPPED,
            row.hostname,
            row.pid,
            list(row.queues or []),
            row.concurrency,
            row.pool,
            row.processed,
            row.started_at,
            row.last_seen,
            row.stopped_at,
        )
    return worker_json(found, running_by_worker([name]).get(name, 0))
