"""Admin for task rows, and the dashboard's pages.

Tasks are read-only here: no add form, no edit form. What the admin can do
to them goes through :mod:`djtasks.queue` like everything else:

- **Retry** enqueues a *copy* of each finished task (new id, same name,
  arguments, queue, priority, parent and root, its headers less the
  canvas's own) whose ``retry_of`` header names the original; the original
  row is left as it was. Needs the ``add`` permission on tasks.
- **Revoke** revokes the tasks that have not started (``queue.revoke``).
  Needs the ``change`` permission.
- **Delete** removes rows, after a confirmation page. Needs ``delete``.

Each works in chunks of rows read in primary-key order, so acting on every
row of a filter with hundreds of thousands of matches takes a few queries per
thousand rows, never one per row. The list itself is in :mod:`.task_list`,
the detail page's content in :mod:`.task_detail`.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import smart_split, unescape_string_literal

from .. import controls, dashboard, queue, redaction, serialization, states
from ..dashboard import duration
from ..exceptions import ContentDisallowed, DecodeError
from ..ids import uuid7
from ..models import TaskRecord
from ..signing import normalize_task_id
from .task_detail import RETRY_OF_HEADER, task_details, task_url
from .task_list import (
    ARGS_PREVIEW,
    EnqueuedFilter,
    FinishedFilter,
    NameFilter,
    QueueFilter,
    StateFilter,
    TaskChangeList,
    TaskPaginator,
    WorkerFilter,
    args_text,
    short_time,
    shown_state,
    state_badge,
)
from .workflow import workflow_links, workflow_view

#: Rows read per statement by the bulk actions.
CHUNK = 500
#: Canvas headers a retried copy leaves behind: what came next in the original's
#: workflow (its chain, callbacks, chord) was already settled when it finished.
WORKFLOW_HEADERS = ("chain", "chord", "group_index", "link", "link_error")

__all__ = ["RETRY_OF_HEADER", "TaskRecordAdmin"]


def _chunks(
    qs: QuerySet,
    fields: tuple[str, ...],
    size: int = CHUNK,
) -> Iterator[list[dict[str, Any]]]:
    """``qs``'s rows as dicts, ``size`` at a time, by primary key (keyset, no OFFSET)."""
    base = qs.order_by("pk").values("pk", *fields)
    last = None
    while True:
        page = list((base if last is None else base.filter(pk__gt=last))[:size])
        if not page:
            return
        yield page
        last = page[-1]["pk"]


# -- the task admin -------------------------------------------------------------------


@admin.register(TaskRecord)
class TaskRecordAdmin(admin.ModelAdmin):
    list_display = (
        "task_column",
        "state_column",
        "queue",
        "priority",
        "args_column",
        "worker",
        "received_column",
        "started_column",
        "done_column",
        "runtime_column",
        "retries",
    )
    list_display_links = ("task_column",)
    list_filter = (
        StateFilter,
        QueueFilter,
        NameFilter,
        WorkerFilter,
        EnqueuedFilter,
        FinishedFilter,
    )
    search_fields = ("name", "payload")
    search_help_text = (
        "A task id finds that task; other words match the task name or the text of its arguments."
    )
    ordering = ("-id",)
    sortable_by = ("task_column",)
    list_per_page = 100
    list_max_show_all = 500
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    # "delete_selected" replaces Django's action of that name: ours asks once, with a
    # count instead of a list of every row, and deletes in chunks.
    actions = ("retry_tasks", "revoke_tasks", "delete_selected")
    change_list_template = "djtasks/admin/task_change_list.html"

    class Media:
        css = {"all": ("djtasks/admin.css",)}

    # -- permissions: read-only rows, actions by permission ---------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.add_{self.opts.model_name}")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        try:
            page = int(request.GET.get("p", 1))
        except ValueError:
            page = 1
        return TaskPaginator(queryset, per_page, orphans, allow_empty_first_page, page_hint=page)

    def changelist_view(
        self,
        request: HttpRequest,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": "Tasks", **(extra_context or {})})

    # -- search ------------------------------------------------------------------------

    def get_search_results(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        search_term: str,
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        task_id = normalize_task_id(term)
        if task_id is not None:
            return queryset.filter(pk=task_id), False
        for bit in smart_split(term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            # Arguments match case-sensitively on PostgreSQL: LIKE scans twice as fast as ILIKE.
            # Rows with sensitive arguments never match on them: no guessing game.
            queryset = queryset.filter(
                Q(name__icontains=bit)
                | (Q(payload__contains=bit) & ~Q(headers__has_key=redaction.ARGSREPR))
            )
        return queryset, False

    # -- columns -------------------------------------------------------------------------

    @admin.display(description="task", ordering="id")
    def task_column(self, obj: TaskRecord) -> str:
        return format_html('{}<br><code class="djtasks-id">{}</code>', obj.name, obj.id)

    @admin.display(description="state")
    def state_column(self, obj: TaskRecord) -> str:
        return state_badge(shown_state(obj))

    @admin.display(description="arguments")
    def args_column(self, obj: TaskRecord) -> str:
        preview = getattr(obj, "args_preview", None)
        if preview is None:
            return ""
        shown = getattr(obj, "argsrepr", None), getattr(obj, "kwargsrepr", None)
        if shown != (None, None):
            # Sensitive arguments: the payload is never decoded for display.
            text = " ".join(s for s in shown if s)
            return format_html('<code class="djtasks-args">{}</code>', text[:80])
        text = preview
        if len(preview) < ARGS_PREVIEW:
            try:
                text = args_text(*serialization.decode_arguments(obj.content_type, preview))
            except (ContentDisallowed, DecodeError):
                text = preview
        if len(text) > 80:
            text = text[:79] + "…"
        return format_html('<code class="djtasks-args">{}</code>', text)

    @admin.display(description="received", ordering=None)
    def received_column(self, obj: TaskRecord) -> str:
        return short_time(obj.received_at)

    @admin.display(description="started")
    def started_column(self, obj: TaskRecord) -> str:
        return short_time(obj.started_at)

    @admin.display(description="done")
    def done_column(self, obj: TaskRecord) -> str:
        return short_time(obj.done_at)

    @admin.display(description="runtime")
    def runtime_column(self, obj: TaskRecord) -> str:
        return duration(obj.runtime)

    # -- actions -------------------------------------------------------------------------

    def _selection_size(self, request: HttpRequest) -> int | None:
        """How many rows were ticked, or ``None`` for "all rows of the filter"."""
        if request.POST.get("select_across") in ("1", "True", "true"):
            return None
        return len(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))

    @admin.action(
        description="Retry selected tasks (enqueue a copy of each finished one)",
        permissions=["retry"],
    )
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        now = timezone.now()
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
        )
        copies: list[str] = []
        with transaction.atomic(using=queue.db_alias()):
            for rows in _chunks(queryset.filter(state__in=states.READY_STATES), fields):
                messages_ = [self._copy(row, now) for row in rows]
                queue.enqueue(messages_)
                copies.extend(str(m.id) for m in messages_)
        selected = self._selection_size(request)
        if not copies:
            self.message_user(
                request,
                "Nothing to retry: only finished tasks (SUCCESS, FAILURE, REVOKED) can be retried.",
                messages.WARNING,
            )
            return
        text = (
            f"Enqueued {len(copies):,} new task(s), each a copy of a selected task "
            f"with a '{RETRY_OF_HEADER}' header naming the original."
        )
        if selected is not None and selected > len(copies):
            text += f" {selected - len(copies):,} unfinished task(s) were left alone."
        if len(copies) == 1:
            text = format_html('{} <a href="{}">See the copy.</a>', text, task_url(copies[0]))
        self.message_user(request, text, messages.SUCCESS)

    @staticmethod
    def _copy(row: dict[str, Any], now: dt.datetime) -> queue.Message:
        headers = {k: v for k, v in (row["headers"] or {}).items() if k not in WORKFLOW_HEADERS}
        headers[RETRY_OF_HEADER] = str(row["pk"])
        return queue.Message(
            id=uuid7(),
            name=row["name"],
            queue=row["queue"],
            priority=row["priority"],
            content_type=row["content_type"],
            payload=row["payload"],
            eta=now,
            created_at=now,
            headers=headers,
            acks_late=row["acks_late"],
            ignore_result=row["ignore_result"],
            parent_id=row["parent_id"],
            root_id=row["root_id"],
            # The copy stays under the same cluster-wide concurrency cap; it does
            # not take the original's unique key (a retry is a deliberate duplicate).
            concurrency_key=row["concurrency_key"],
        )

    @admin.action(
        description="Revoke selected tasks (those not started yet)", permissions=["revoke"]
    )
    def revoke_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        now = timezone.now()
        reason = f"revoked in the admin by {request.user}"
        revoked = 0
        for rows in _chunks(queryset.filter(state__in=controls.REVOCABLE_STATES), (), 1000):
            revoked += len(queue.revoke([str(r["pk"]) for r in rows], reason, now))
        selected = self._selection_size(request)
        text = f"Revoked {revoked:,} task(s)."
        if selected is not None and selected > revoked:
            text += f" {selected - revoked:,} had already started or finished and were left alone."
        self.message_user(request, text, messages.SUCCESS if revoked else messages.WARNING)

    @admin.action(description="Delete selected tasks", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            return self._delete_confirmation(request, queryset)
        deleted = 0
        with transaction.atomic(using=queue.db_alias()):
            for rows in _chunks(queryset, (), 1000):
                chunk = dashboard.tasks().filter(pk__in=[r["pk"] for r in rows])
                # The admin's history, as for any deletion: one bulk insert a chunk.
                self.log_deletions(request, chunk.only("id", "name", "state"))
                deleted += chunk.delete()[0]
        self.message_user(request, f"Deleted {deleted:,} task(s).", messages.SUCCESS)
        return None

    def _delete_confirmation(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        across = self._selection_size(request) is None
        count = TaskPaginator(queryset, 1, page_hint=dashboard.COUNT_CAP).count
        unfinished = dashboard.capped_count(queryset.filter(state__in=states.UNREADY_STATES))
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete tasks?",
            "opts": self.opts,
            "count": count,
            "unfinished": unfinished,
            "unfinished_capped": unfinished > dashboard.COUNT_CAP,
            "sample": list(queryset.order_by("-pk").values("id", "name", "state")[:10]),
            "select_across": across,
            "selected": [] if across else request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "first_selected": (request.POST.getlist(helpers.ACTION_CHECKBOX_NAME) or [""])[0],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "djtasks/admin/task_delete_confirmation.html", context)

    # -- the detail page -----------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Task {obj.name}",
            "opts": self.opts,
            "original": obj,
            "task": obj,
            "media": self.media,
            "has_delete_permission": self.has_delete_permission(request, obj),
            "has_retry_permission": self.has_retry_permission(request),
            **task_details(obj, request.user),
            **workflow_links(obj),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "djtasks/admin/task_detail.html", context)

    # -- extra pages ---------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(self.dashboard_view), name=f"{prefix}_dashboard"),
            path(
                "dashboard/data/", wrap(self.dashboard_data_view), name=f"{prefix}_dashboard_data"
            ),
            path(
                "control/<slug:name>/<str:target>/",
                wrap(self.control_view),
                name=f"{prefix}_control",
            ),
            path(
                "<path:object_id>/workflow/",
                wrap(functools.partial(workflow_view, self)),
                name=f"{prefix}_workflow",
            ),
            *super().get_urls(),
        ]

    def _dashboard_context(self, request: HttpRequest) -> dict[str, Any]:
        snap = dashboard.snapshot(timezone.now())
        return {"snap": snap, **dashboard_sections_context(snap, request.user)}

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Task dashboard",
            "opts": self.opts,
            "media": self.media,
            "refresh_seconds": 5,
            **self._dashboard_context(request),
        }
        return TemplateResponse(request, "djtasks/admin/dashboard.html", context)

    def dashboard_data_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = self._dashboard_context(request)
        sections = {
            name: render_to_string(f"djtasks/admin/dashboard/{name}.html", context, request)
            for name in DASHBOARD_SECTIONS
        }
        response = JsonResponse(
            {
                "sections": sections,
                "stats": context["snap"].as_json(),
                "updated": timezone.localtime(context["snap"].now).strftime("%H:%M:%S"),
            }
        )
        response["Cache-Control"] = "no-store"
        return response

    def control_view(self, request: HttpRequest, name: str, target: str) -> HttpResponse:
        control = controls.get(name)
        if control is None:
            raise Http404(f"no control named {name!r}")
        if not request.user.has_perm(control.permission):
            raise PermissionDenied
        if control.target == "task":
            target = normalize_task_id(target) or ""
            if not target:
                raise Http404("not a task id")
        next_url = request.POST.get("next") or request.GET.get("next") or ""
        if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
            next_url = reverse("admin:djtasks_taskrecord_dashboard")
        if request.method == "POST":
            try:
                self.message_user(request, control.run(target, request.user), messages.SUCCESS)
            except controls.ControlError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(next_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{control.label}?",
            "opts": self.opts,
            "control": control,
            "question": control.question.format(target=target),
            "target": target,
            "next": next_url,
        }
        return TemplateResponse(request, "djtasks/admin/control_confirmation.html", context)


DASHBOARD_SECTIONS = ("summary", "throughput", "queues", "workers", "runtimes", "failures")


def dashboard_sections_context(snap: dashboard.Snapshot, user: Any) -> dict[str, Any]:
    """What the dashboard's section templates need besides the snapshot."""
    total_day = sum(snap.finished_day.values())
    return {
        "state_cards": [
            *(
                {"state": s, "count": snap.unfinished.get(s, 0), "when": "now"}
                for s in (states.PENDING, states.RETRY, states.RECEIVED, states.STARTED)
            ),
            *(
                {
                    "state": s,
                    "count": snap.finished_hour.get(s, 0),
                    "when": "last hour",
                    "day": snap.finished_day.get(s, 0),
                }
                for s in (states.SUCCESS, states.FAILURE, states.REVOKED)
            ),
        ],
        "finished_day_total": total_day,
        "hour_chart": dashboard.bar_chart(snap.minutes),
        "day_chart": dashboard.bar_chart(snap.day, per_minute=dashboard.DAY_BUCKET_MINUTES),
        "queue_controls": controls.for_target("queue", user),
        "worker_controls": controls.for_target("worker", user),
        "runtime_window": "hour"
        if snap.runtime_window >= dashboard.HOUR
        else duration(snap.runtime_window.total_seconds()),
        "queue_rows": [{"queue": q, "age": duration(q.oldest_age(snap.now))} for q in snap.queues],
        "workers_total": len(snap.workers),
    }
