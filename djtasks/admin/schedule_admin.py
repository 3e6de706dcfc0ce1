"""Admin for periodic schedules: what ``taskbeat`` sends, and when.

- The list shows each schedule in words ("every 5 minutes", "at 07:00 on
  Monday to Friday (Europe/Paris)"), its next run times and its last run,
  and which beat leads.
- The form refuses what beat could not run, with the reason: an unknown
  task name, a cron expression that does not parse or never matches, an
  interval below one second, arguments the task does not accept.
- Saving never overwrites beat's bookkeeping (last run, run count); a
  change of the schedule makes beat compute the next run afresh, and beat
  sees it at once on PostgreSQL (NOTIFY) or within
  ``DJTASKS_BEAT_MAX_LOOP_INTERVAL`` seconds on SQLite.
- Actions (``change`` permission): enable, disable, run now (enqueues one
  run through the task registry, outside the schedule), and reset entries
  from ``DJTASKS_BEAT_SCHEDULE`` to their settings definition.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .. import beat
from ..exceptions import DjtasksError
from ..models import BeatLease, PeriodicTask
from ..registry import tasks as registry

TASK_NAMES_ID = "djtasks-task-names"
#: What the admin form edits; beat's bookkeeping is never written by a save.
EDITABLE = ("name", "enabled", *beat.DEFINITION, "start_at", "end_at", "updated_at")


class TaskNameInput(forms.TextInput):
    """A text input that suggests the registered task names."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(
            {"list": TASK_NAMES_ID, "size": 60, "autocomplete": "off", **(attrs or {})}
        )

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> str:
        options = format_html_join(
            "", '<option value="{}"></option>', ((n,) for n in registry.names())
        )
        return format_html(
            '{}<datalist id="{}">{}</datalist>',
            super().render(name, value, attrs, renderer),
            TASK_NAMES_ID,
            options,
        )


class PeriodicTaskForm(forms.ModelForm):
    class Meta:
        model = PeriodicTask
        fields = (
            "name",
            "task",
            "enabled",
            "description",
            "kind",
            "every",
            "period",
            "crontab",
            "clocked_at",
            "timezone",
            "start_at",
            "end_at",
            "catch_up",
            "args",
            "kwargs",
            "queue",
            "priority",
            "expires",
        )
        widgets = {
            "task": TaskNameInput(),
            "crontab": forms.TextInput(attrs={"size": 30, "placeholder": "0 7 * * 1-5"}),
            "timezone": forms.TextInput(attrs={"placeholder": "e.g. Europe/Paris"}),
            "args": forms.Textarea(attrs={"rows": 2, "cols": 60}),
            "kwargs": forms.Textarea(attrs={"rows": 3, "cols": 60}),
            "description": forms.Textarea(attrs={"rows": 2, "cols": 60}),
        }


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(admin.ModelAdmin):
    form = PeriodicTaskForm
    change_list_template = "djtasks/beat/change_list.html"
    list_display = (
        "name",
        "enabled",
        "task",
        "schedule",
        "next_runs",
        "last_run_at",
        "total_run_count",
        "origin",
    )
    list_display_links = ("name",)
    list_filter = ("enabled", "kind", "source", "catch_up")
    search_fields = ("name", "task", "description")
    actions = ("enable", "disable", "run_now", "reset_to_settings")
    readonly_fields = (
        "schedule",
        "upcoming_runs",
        "last_run_at",
        "total_run_count",
        "origin",
        "recent_runs",
    )
    fieldsets = (
        (None, {"fields": ("name", "task", "enabled", "description", "origin")}),
        (
            "Schedule",
            {
                "fields": (
                    "kind",
                    ("every", "period"),
                    "crontab",
                    "clocked_at",
                    "timezone",
                    ("start_at", "end_at"),
                    "catch_up",
                ),
                "description": "Fill in the fields of the chosen type: every + period for an "
                "interval, the cron expression for a crontab, the time for a "
                "one-off (disabled once it has run).",
            },
        ),
        (
            "Arguments and options",
            {
                "fields": ("args", "kwargs", "queue", "priority", "expires"),
            },
        ),
        (
            "Runs",
            {
                "fields": (
                    "schedule",
                    "upcoming_runs",
                    "last_run_at",
                    "total_run_count",
                    "recent_runs",
                ),
            },
        ),
    )

    # -- columns --------------------------------------------------------------------

    @admin.display(description="schedule")
    def schedule(self, obj: PeriodicTask) -> str:
        if obj.pk is None:
            return "-"
        return obj.describe_schedule()

    @admin.display(description="next runs")
    def next_runs(self, obj: PeriodicTask) -> str:
        return _times(obj, 3) or "-"

    @admin.display(description="next runs")
    def upcoming_runs(self, obj: PeriodicTask) -> str:
        if obj.pk is None:
            return "-"
        return _times(obj, 5) or "- (disabled, or no run left)"

    @admin.display(description="defined in")
    def origin(self, obj: PeriodicTask) -> str:
        if obj.source != PeriodicTask.FROM_SETTINGS:
            return "admin"
        if beat.edited_since_sync(obj):
            return (
                "DJTASKS_BEAT_SCHEDULE, edited here: beat keeps this version until "
                "'Reset to DJTASKS_BEAT_SCHEDULE'"
            )
        return "DJTASKS_BEAT_SCHEDULE"

    @admin.display(description="recent runs")
    def recent_runs(self, obj: PeriodicTask) -> str:
        if obj.pk is None:
            return "-"
        ticks = list(obj.ticks.all()[:10])
        if not ticks:
            return "none yet"
        zone = _zone(obj)
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>due {} → task {} (by {})</li>",
                (
                    (
                        timezone.localtime(t.due_at, zone).strftime("%Y-%m-%d %H:%M:%S %Z"),
                        _task_link(t.task_id),
                        t.beat or "?",
                    )
                    for t in ticks
                ),
            ),
        )

    # -- saving ----------------------------------------------------------------------

    def save_model(
        self, request: HttpRequest, obj: PeriodicTask, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            # Never write beat's bookkeeping back with stale values.
            obj.save(update_fields=EDITABLE)
        else:
            obj.save()

    # -- actions ---------------------------------------------------------------------

    @admin.action(description="Enable selected periodic tasks", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        n = self._set_enabled(queryset, True)
        self.message_user(
            request,
            f"Enabled {n} periodic task(s); they run next at their next scheduled time.",
            messages.SUCCESS,
        )

    @admin.action(description="Disable selected periodic tasks", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        n = self._set_enabled(queryset, False)
        self.message_user(request, f"Disabled {n} periodic task(s).", messages.SUCCESS)

    @staticmethod
    def _set_enabled(queryset: QuerySet[PeriodicTask], enabled: bool) -> int:
        n = 0
        for obj in queryset.exclude(enabled=enabled):
            obj.enabled = enabled
            obj.save(update_fields=["enabled", "updated_at"])  # re-enabling clears next run
            n += 1
        return n

    @admin.action(description="Run selected periodic tasks now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        for obj in queryset:
            try:
                result = beat.send(obj, headers={"run_now": True})
            except (TypeError, ValueError, DjtasksError) as exc:
                self.message_user(request, f"{obj.name}: not sent: {exc}", messages.ERROR)
                continue
            self.message_user(
                request,
                format_html("{}: sent task {}", obj.name, _task_link(result.id)),
                messages.SUCCESS,
            )

    @admin.action(description="Reset to DJTASKS_BEAT_SCHEDULE", permissions=["change"])
    def reset_to_settings(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        entries = beat.settings_entries()
        done, skipped = [], []
        for obj in queryset:
            if obj.source == PeriodicTask.FROM_SETTINGS and obj.name in entries:
                beat.apply_definition(obj, entries[obj.name])
                done.append(obj.name)
            else:
                skipped.append(obj.name)
        if done:
            self.message_user(request, f"Reset to settings: {', '.join(done)}.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"Not in DJTASKS_BEAT_SCHEDULE (left as they are): {', '.join(skipped)}.",
                messages.WARNING,
            )

    # -- the list page ---------------------------------------------------------------------

    def changelist_view(
        self,
        request: HttpRequest,
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        lease = BeatLease.objects.filter(pk=beat.LEASE_NAME).first()
        leader = None
        if lease is not None and lease.holder:
            leader = {
                "name": lease.holder,
                "since": lease.acquired_at,
                "alive": lease.expires_at is not None and lease.expires_at >= timezone.now(),
            }
        return super().changelist_view(request, {**(extra_context or {}), "beat_leader": leader})


def _zone(obj: PeriodicTask) -> Any:
    try:
        return obj.get_zone()
    except ValueError:
        return timezone.get_current_timezone()


def _times(obj: PeriodicTask, n: int) -> str:
    zone = _zone(obj)
    return ", ".join(
        timezone.localtime(t, zone).strftime("%Y-%m-%d %H:%M:%S %Z") for t in obj.upcoming(n)
    )


def _task_link(task_id: Any) -> str:
    try:
        url = reverse("admin:djtasks_taskrecord_change", args=[str(task_id)])
    except NoReverseMatch:
        return format_html("{}", task_id)
    return format_html('<a href="{}">{}</a>', url, task_id)
