"""Admin for worker rows: status from heartbeats, load from the tasks they hold."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from .. import dashboard, states
from ..models import TaskRecord, Worker


class WorkerStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("online", "Online"), ("offline", "Offline (silent)"), ("stopped", "Stopped")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        cutoff = dashboard.online_cutoff(timezone.now())
        if self.value() == "online":
            return queryset.filter(stopped_at__isnull=True, last_seen__gte=cutoff)
        if self.value() == "offline":
            return queryset.filter(stopped_at__isnull=True, last_seen__lt=cutoff)
        if self.value() == "stopped":
            return queryset.filter(stopped_at__isnull=False)
        return queryset


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Worker processes, kept by their heartbeats; read-only (delete clears old rows)."""

    list_display = (
        "name",
        "status_column",
        "hostname",
        "pid",
        "pool",
        "concurrency",
        "load_column",
        "queues_column",
        "processed",
        "started_at",
        "last_seen",
    )
    list_filter = (WorkerStatusFilter, "pool", "hostname")
    search_fields = ("name", "hostname")
    ordering = ("-last_seen",)
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = (
        "name",
        "hostname",
        "pid",
        "queues",
        "concurrency",
        "pool",
        "started_at",
        "last_seen",
        "stopped_at",
        "processed",
    )
    change_list_template = "djtasks/admin/worker_change_list.html"

    class Media:
        css = {"all": ("djtasks/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The tasks each worker holds, counted from the held index in the same query.
        held = (
            TaskRecord.objects.filter(
                worker=OuterRef("name"), state__in=(states.RECEIVED, states.STARTED)
            )
            .order_by()
            .values("worker")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(running=Coalesce(Subquery(held, output_field=IntegerField()), 0))
        )

    @admin.display(description="status")
    def status_column(self, obj: Worker) -> str:
        if obj.stopped_at is not None:
            status, css = "stopped", "stopped"
        elif obj.last_seen >= dashboard.online_cutoff(timezone.now()):
            status, css = "online", "success"
        else:
            status, css = "offline", "failure"
        return format_html('<span class="djtasks-state djtasks-state-{}">{}</span>', css, status)

    @admin.display(description="load")
    def load_column(self, obj: Worker) -> str:
        return f"{getattr(obj, 'running', 0)} / {obj.concurrency}"

    @admin.display(description="queues")
    def queues_column(self, obj: Worker) -> str:
        return ", ".join(obj.queues or [])
