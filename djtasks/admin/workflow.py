"""The admin's workflow page: the tree of a task's workflow, each node with its state.

A workflow is every row that shares the task's root (``root_id``, or the task
itself when it is the root). The rows are found level by level from the root
through the two indexed links a canvas writes: ``parent_id`` (the next step
of a chain, a chord's body, callbacks, tasks a task enqueued) and
``group_id`` (the other members of a group or chord header). Each level is
one query, so a workflow costs as many queries as it is deep, never a scan of
the table. Group records (:class:`~djtasks.models.TaskGroup`) add what rows
alone cannot say: a chord's size, how many members it still waits for, and
the id its body will have.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from .. import dashboard, queue
from ..models import TaskGroup
from .task_list import shown_state

#: At most this many rows are shown; a bigger workflow is cut, and says so.
MAX_ROWS = 2000
#: At most this many levels (queries) are followed from the root.
MAX_DEPTH = 200

_FIELDS = (
    "id",
    "name",
    "state",
    "custom_state",
    "parent_id",
    "root_id",
    "group_id",
    "headers",
    "created_at",
    "done_at",
    "runtime",
    "worker",
    "exc_type",
)


@dataclass
class Node:
    """One row of the workflow and the rows that hang under it."""

    row: dict[str, Any]
    children: list[Node] = field(default_factory=list)
    role: str = ""  # "chord member 2", "group member 0", "chord body", ...

    @property
    def id(self) -> str:
        return str(self.row["id"])


@dataclass
class Workflow:
    root_id: str
    roots: list[Node]
    groups: list[dict[str, Any]]
    count: int
    truncated: bool
    states: dict[str, int]

    def lines(self) -> list[dict[str, Any]]:
        """The tree in display order, each node with its depth (iteratively:
        a chain of thousands of steps is that deep)."""
        out: list[dict[str, Any]] = []
        stack = [(node, 0) for node in reversed(self.roots)]
        while stack:
            node, depth = stack.pop()
            out.append({"node": node, "depth": depth, "indent": min(depth, 40) * 20})
            stack.extend((child, depth + 1) for child in reversed(node.children))
        return out


def workflow_root(task: Any) -> str:
    """The id of the first task of ``task``'s workflow."""
    return str(task.root_id or task.id)


def load(root_id: str) -> Workflow:
    """Read the rows of the workflow rooted at ``root_id`` and arrange them as a tree."""
    rows: dict[str, dict[str, Any]] = {}
    first = list(dashboard.tasks().filter(pk=root_id).values(*_FIELDS))
    frontier, group_ids = [], set()
    for row in first:
        rows[str(row["id"])] = row
        frontier.append(row["id"])
    depth, truncated = 0, False
    new_groups = {r["group_id"] for r in first if r["group_id"]}
    while (frontier or new_groups) and depth < MAX_DEPTH:
        depth += 1
        group_ids |= new_groups
        cond = Q(pk__in=[])
        if frontier:
            cond |= Q(parent_id__in=frontier)
        if new_groups:
            cond |= Q(group_id__in=list(new_groups))
        found = list(
            dashboard.tasks()
            .filter(cond)
            .order_by("pk")
            .values(*_FIELDS)[: MAX_ROWS + 1 - len(rows)]
        )
        frontier, new_groups = [], set()
        for row in found:
            key = str(row["id"])
            if key in rows:
                continue
            rows[key] = row
            frontier.append(row["id"])
            if row["group_id"] and row["group_id"] not in group_ids:
                new_groups.add(row["group_id"])
        if len(rows) > MAX_ROWS:
            truncated = True
            rows = dict(list(rows.items())[:MAX_ROWS])
            break
    truncated = truncated or bool(frontier or new_groups)  # stopped at MAX_DEPTH
    groups = _groups(group_ids | _groups_of_chords(rows))
    return Workflow(
        root_id, _tree(rows, groups), list(groups.values()), len(rows), truncated, _count(rows)
    )


def _groups_of_chords(rows: dict[str, dict[str, Any]]) -> set[Any]:
    ids = set()
    for row in rows.values():
        chord_id = (row["headers"] or {}).get("chord") if isinstance(row["headers"], dict) else None
        if chord_id:
            try:
                ids.add(uuid.UUID(str(chord_id)))
            except ValueError:
                pass
    return ids


def _groups(ids: set[Any]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    records = (
        TaskGroup.objects.using(queue.db_alias())
        .filter(pk__in=list(ids))
        .order_by("created_at", "pk")
        .values("id", "size", "remaining", "failed", "body", "body_id", "created_at")
    )
    out = {}
    for g in records:
        body = g["body"] or {}
        out[str(g["id"])] = {
            **g,
            "kind": "chord" if g["body"] else "group",
            "body_name": body.get("task") if isinstance(body, dict) else None,
            "done": g["size"] - g["remaining"],
            "anchor": f"group-{g['id']}",
        }
    return out


def _tree(rows: dict[str, dict[str, Any]], groups: dict[str, dict[str, Any]]) -> list[Node]:
    bodies = {str(g["body_id"]): gid for gid, g in groups.items() if g["body_id"]}
    nodes = {key: Node(row) for key, row in rows.items()}
    for key, node in nodes.items():
        row = node.row
        row["shown_state"] = shown_state(row)
        headers = row["headers"] if isinstance(row["headers"], dict) else {}
        if row["group_id"]:
            gid = str(row["group_id"])
            kind = groups.get(gid, {}).get("kind", "group")
            node.role = f"{kind} member {headers.get('group_index', '?')}"
        if key in bodies:
            node.role = f"{node.role}, chord body" if node.role else "chord body"
    roots = []
    # Siblings in the order they were enqueued; a group's members (enqueued
    # together, with ids not ordered within a millisecond) by their index.
    for node in sorted(nodes.values(), key=_order):
        parent = str(node.row["parent_id"]) if node.row["parent_id"] else None
        if parent in nodes and parent != node.id:
            nodes[parent].children.append(node)
        else:
            roots.append(node)
    return roots


def _order(node: Node) -> tuple[Any, ...]:
    row = node.row
    headers = row["headers"] if isinstance(row["headers"], dict) else {}
    index = headers.get("group_index", 0)
    return (
        row["created_at"],
        str(row["group_id"] or ""),
        index if isinstance(index, int) else 0,
        node.id,
    )


def _count(rows: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return dict(sorted(counts.items()))


def workflow_url(task_id: Any) -> str:
    return reverse("admin:djtasks_taskrecord_workflow", args=[str(task_id)])


def workflow_links(task: Any) -> dict[str, Any]:
    """Context for a task's page: its workflow page and its group's place on it."""
    url = workflow_url(task.id)
    return {
        "workflow_url": url,
        "group_url": f"{url}#group-{task.group_id}" if task.group_id else None,
    }


def workflow_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """The workflow of task ``object_id``: a tree of its root's rows with their states."""
    task = model_admin.get_object(request, unquote(object_id))
    if not model_admin.has_view_permission(request, task):
        raise PermissionDenied
    if task is None:
        raise Http404("no task with this id")
    flow = load(workflow_root(task))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Workflow of {task.name}",
        "opts": model_admin.opts,
        "media": model_admin.media,
        "task": task,
        "current": str(task.id),
        "flow": flow,
        "max_rows": MAX_ROWS,
    }
    return TemplateResponse(request, "djtasks/admin/workflow.html", context)
