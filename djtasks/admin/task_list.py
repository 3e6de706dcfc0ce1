"""The task list's machinery: a paginator that never counts the table, the
changelist, the filters, and how cells are drawn.

Everything here keeps the list fast on a table of millions of rows: no exact
``COUNT``, newest-first order by the primary key (task ids are UUIDv7, so
that is enqueue order), heavy columns deferred, and filter choices taken
from settings, the registry, the worker rows and the (small) set of waiting
rows, never from a scan of the history.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Left
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from .. import dashboard, redaction, states
from ..conf import settings
from ..registry import tasks as registry

#: The task list reads at least this many matching ids (see :class:`TaskPaginator`).
READ_AHEAD = 500
#: Characters of the payload the list reads for its arguments column.
ARGS_PREVIEW = 200


# -- counting -------------------------------------------------------------------------


class ApproximateCount(int):
    """A row count that is a bound or an estimate: an ``int`` that prints as ``label``.

    The admin templates print ``cl.result_count`` as it is ("600+ tasks",
    "Select all ~1,000,000 tasks") and compare it as a number.
    """

    label: str

    def __new__(cls, value: int, label: str) -> ApproximateCount:
        obj = super().__new__(cls, value)
        obj.label = label
        return obj

    def __str__(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"ApproximateCount({int(self)}, {self.label!r})"


class TaskPaginator(Paginator):
    """Pages of a task queryset read with one bounded scan.

    The matching ids are read once, in the list's order, as far as the page
    shown plus five pages (at least :data:`READ_AHEAD` ids, at most
    :data:`~djtasks.dashboard.COUNT_CAP`); the count is their number and a
    page is a primary-key lookup of its slice. So a filter or search that
    must scan the table scans it once per request, not twice (count, then
    page), stops as soon as it has enough rows, and no page is read with a
    large OFFSET.

    When more rows match than were read, the count prints as "600+" (or,
    for the whole unfiltered table on PostgreSQL, as the planner's estimate,
    "~1,000,000") and the pages end five pages further on.
    """

    cap = dashboard.COUNT_CAP

    def __init__(
        self, object_list: Any, per_page: int, *args: Any, page_hint: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(object_list, per_page, *args, **kwargs)
        self.limit = min(self.cap, max(READ_AHEAD, (max(1, page_hint) + 5) * int(per_page)))

    def ids(self) -> list[Any]:
        if not hasattr(self, "_ids"):
            self._ids = list(self.object_list.values_list("pk", flat=True)[: self.limit + 1])
        return self._ids

    @property
    def count(self) -> int:  # type: ignore[override]
        if not hasattr(self, "_count"):
            n = len(self.ids())
            if n > self.limit:
                unfiltered = not self.object_list.query.where
                estimate = dashboard.estimated_total() if unfiltered else None
                label = (
                    f"~{estimate:,}" if estimate and estimate > self.limit else f"{self.limit:,}+"
                )
                n = ApproximateCount(n, label)
            self._count = n
        return self._count

    def page(self, number: Any) -> Any:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        ids = self.ids()[bottom : bottom + self.per_page]
        return self._get_page(self.object_list.filter(pk__in=ids), number, self)


class TaskChangeList(ChangeList):
    """The task list's rows without their heavy columns; ``args_preview`` instead of the payload."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        qs = super().get_queryset(request, exclude_parameters)
        return qs.defer("payload", "result", "traceback", "exc_message", "headers").annotate(
            args_preview=Left("payload", ARGS_PREVIEW),
            # A call whose arguments are sensitive shows these instead (redaction.py).
            argsrepr=KT(f"headers__{redaction.ARGSREPR}"),
            kwargsrepr=KT(f"headers__{redaction.KWARGSREPR}"),
        )

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if not self.multi_page or self.show_all:
            # Django would read the whole (small) queryset again; the ids are known.
            self.result_list = self.queryset.filter(pk__in=self.paginator.ids())


# -- filters --------------------------------------------------------------------------


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("unfinished", "Not finished"), *states.CHOICES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "unfinished":
            return queryset.filter(state__in=states.UNREADY_STATES)
        if value in states.ALL_STATES:
            return queryset.filter(state=value)
        return queryset


class _ChoiceFilter(admin.SimpleListFilter):
    """A filter on one column whose choices are cheap to list (no table scan)."""

    field: str

    def names(self, request: HttpRequest) -> set[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = {n for n in self.names(request) if n}
        if self.value():
            names.add(self.value())
        return [(n, n) for n in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        return queryset.filter(**{self.field: self.value()})


class QueueFilter(_ChoiceFilter):
    """Queues named by settings, tasks, workers, and waiting rows (from the ready index)."""

    title = "queue"
    parameter_name = "queue"
    field = "queue"

    def names(self, request: HttpRequest) -> set[str]:
        names = {settings.DEFAULT_QUEUE}
        names.update(t.queue for t in registry._tasks.values() if t.queue)
        for route in (settings.TASK_ROUTES or {}).values():
            names.add(route if isinstance(route, str) else dict(route).get("queue", ""))
        for queues in dashboard.workers().values_list("queues", flat=True)[:200]:
            names.update(q for q in queues or [] if isinstance(q, str))
        names.update(
            dashboard.tasks()
            .filter(state__in=states.WAITING_STATES)
            .order_by()
            .values_list("queue", flat=True)
            .distinct()
        )
        return names


class NameFilter(_ChoiceFilter):
    """Task names registered in this process."""

    title = "task name"
    parameter_name = "name"
    field = "name"

    def names(self, request: HttpRequest) -> set[str]:
        return set(registry.names())


class WorkerFilter(_ChoiceFilter):
    """The 50 most recently seen workers."""

    title = "worker"
    parameter_name = "worker"
    field = "worker"

    def names(self, request: HttpRequest) -> set[str]:
        return set(dashboard.workers().order_by("-last_seen").values_list("name", flat=True)[:50])


_RANGES = [
    ("15m", "Past 15 minutes", dt.timedelta(minutes=15)),
    ("1h", "Past hour", dt.timedelta(hours=1)),
    ("24h", "Past 24 hours", dt.timedelta(days=1)),
    ("7d", "Past 7 days", dt.timedelta(days=7)),
    ("older", "Older than 7 days", dt.timedelta(days=7)),
]


class _TimeFilter(admin.SimpleListFilter):
    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, label, _ in _RANGES]

    def range(self) -> Q | None:
        for key, _, delta in _RANGES:
            if key == self.value():
                since = timezone.now() - delta
                field = self.parameter_name
                return (
                    Q(**{f"{field}__lt": since})
                    if key == "older"
                    else Q(**{f"{field}__gte": since})
                )
        return None


class EnqueuedFilter(_TimeFilter):
    title = "enqueued"
    parameter_name = "created_at"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        condition = self.range()
        return queryset if condition is None else queryset.filter(condition)


class FinishedFilter(_TimeFilter):
    """Finished in a time range. The state condition changes nothing (only finished
    rows have ``done_at``) but lets the ``(state, done_at)`` index serve it."""

    title = "finished"
    parameter_name = "done_at"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        condition = self.range()
        if condition is None:
            return queryset
        return queryset.filter(condition, state__in=states.READY_STATES)


# -- formatting -----------------------------------------------------------------------


def short_time(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    local = timezone.localtime(value)
    text = local.strftime("%H:%M:%S" if local.date() == timezone.localdate() else "%b %d %H:%M")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S.%f %Z"),
        text,
    )


def shown_state(row: Any) -> str:
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k))
    state = get("state")
    return get("custom_state") or state if state == states.STARTED else state


def state_badge(state: str) -> str:
    css = state.lower() if state in states.ALL_STATES else "custom"
    return format_html('<span class="djtasks-state djtasks-state-{}">{}</span>', css, state)


def args_text(args: list[Any], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(parts)
