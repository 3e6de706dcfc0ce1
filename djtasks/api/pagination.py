"""Keyset pages of the task list: never ``OFFSET``, and a bounded scan per page.

The list is ordered newest first along an index that matches its filters:

- ``state`` a final state (SUCCESS, FAILURE, REVOKED): by ``done_at``, on
  the ``(state, done_at)`` index: the tasks that finished last come first;
- else ``name``: by ``created_at``, on the ``(name, created_at)`` index;
- else: by ``id``, the primary key (task ids are UUIDv7, so by creation).

A page continues after the last row of the previous one: the cursor holds
that row's ordering key and id, so a page costs the same at the end of a
million rows as at the start. Filters the index does not serve (``queue``,
``worker``, a waiting state) are checked on at most :data:`SCAN_BUDGET`
index entries per page: when they match few rows, a page may hold fewer
rows than asked, with a cursor to go on from where it stopped, rather than
read the whole table in one request.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import CharField, Count, Min, Q, QuerySet
from django.db.models.functions import Cast
from django.utils.dateparse import parse_datetime

from .. import states
from ..dashboard import uuid7_floor
from .auth import ApiError

#: Index entries a page examines at most when a filter is not served by its index.
SCAN_BUDGET = 20_000
#: The smallest UUID: a cursor ``(key, MIN_ID)`` means "every row with this key was seen".
MIN_ID = uuid.UUID(int=0)

BY_ID, BY_CREATED, BY_DONE = "id", "created", "done"
_KEY_FIELD = {BY_ID: "id", BY_CREATED: "created_at", BY_DONE: "done_at"}


@dataclass(frozen=True)
class Filters:
    state: str | None = None
    name: str | None = None
    queue: str | None = None
    worker: str | None = None
    since: dt.datetime | None = None

    @property
    def ordering(self) -> str:
        if self.state in states.READY_STATES:
            return BY_DONE
        if self.name is not None:
            return BY_CREATED
        return BY_ID


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    cursor: str | None  # where the next page starts; None at the end
    ordering: str
    scanned_to: Any = None  # set when the scan budget cut the page short


def encode_cursor(ordering: str, key: Any, task_id: Any) -> str:
    if isinstance(key, dt.datetime):
        key = key.isoformat()
    raw = json.dumps([ordering, str(key) if key is not None else None, str(task_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, ordering: str) -> tuple[Any, uuid.UUID]:
    """``(key, id)`` of a cursor made for ``ordering``.

    :raises ApiError: 400 for a cursor that is not one, or that was made for
        other filters (the list would then be in another order).
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, key, task_id = json.loads(raw)
        task_uuid = uuid.UUID(task_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ApiError(400, "cursor is not a cursor this API gave") from None
    if made_for != ordering:
        raise ApiError(
            400,
            "this cursor belongs to a list with other filters: keep the "
            "state and name filters of the request that gave it",
        )
    if ordering == BY_ID:
        return task_uuid, task_uuid
    when = parse_datetime(key) if isinstance(key, str) else None
    if when is None:
        raise ApiError(400, "cursor is not a cursor this API gave")
    return when, task_uuid


def task_page(
    base: QuerySet[Any], filters: Filters, limit: int, cursor: str | None, fields: tuple[str, ...]
) -> Page:
    """One page of ``base`` (all tasks) under ``filters``, newest first."""
    ordering = filters.ordering
    key = _KEY_FIELD[ordering]
    driver, residual = base, Q()
    if ordering == BY_DONE:
        driver = driver.filter(state=filters.state)
    elif filters.state is not None:
        residual &= Q(state=filters.state)
    if ordering == BY_CREATED:
        driver = driver.filter(name=filters.name)
    elif filters.name is not None:
        residual &= Q(name=filters.name)
    if filters.queue is not None:
        residual &= Q(queue=filters.queue)
    if filters.worker is not None:
        residual &= Q(worker=filters.worker)
    if filters.since is not None:
        since: Any = uuid7_floor(filters.since) if ordering == BY_ID else filters.since
        driver = driver.filter(**{f"{key}__gte": since})
    if cursor:
        at, task_id = decode_cursor(cursor, ordering)
        if ordering == BY_ID:
            driver = driver.filter(id__lt=task_id)
        else:
            # The redundant bound lets the index range stop at the cursor; the
            # OR then settles rows that share its timestamp.
            driver = driver.filter(**{f"{key}__lte": at}).filter(
                Q(**{f"{key}__lt": at}) | Q(**{key: at, "id__lt": task_id})
            )
    order = (f"-{key}", "-id") if ordering != BY_ID else ("-id",)
    boundary = None
    if residual:
        # Where the budget of index entries ends (an index-only read of the
        # key); only rows from there on are checked against the rest.
        # PostgreSQL has no min(uuid): ids compare as their canonical text.
        low = Min(Cast(key, CharField())) if ordering == BY_ID else Min(key)
        scan = driver.order_by(f"-{key}").values(key)[:SCAN_BUDGET].aggregate(low=low, n=Count("*"))
        if scan["n"] >= SCAN_BUDGET:
            boundary = uuid.UUID(scan["low"]) if ordering == BY_ID else scan["low"]
            driver = driver.filter(**{f"{key}__gte": boundary})
    rows = list(driver.filter(residual).order_by(*order).values(*fields)[: limit + 1])
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        return Page(rows, encode_cursor(ordering, last[key], last["id"]), ordering)
    if boundary is not None:
        # Every row from the boundary on was examined (ties included): go on below it.
        below = encode_cursor(ordering, boundary, boundary if ordering == BY_ID else MIN_ID)
        return Page(rows, below, ordering, scanned_to=boundary)
    return Page(rows, None, ordering)
