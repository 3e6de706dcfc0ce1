"""The tables: a task is a row (:class:`TaskRecord`), a worker is a row (:class:`Worker`)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import states
from .ids import uuid7


class TaskRecord(models.Model):
    """One task call: its message, its place in the queue, and its outcome.

    All writes go through :mod:`djtasks.queue`; read it with the ORM.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=255, db_index=False)
    queue = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(default=0, help_text="-100..100, higher runs first")
    state = models.CharField(max_length=16, choices=states.CHOICES, default=states.PENDING)

    # The message.
    content_type = models.CharField(max_length=64, default="application/json")
    payload = models.TextField(help_text="encoded [args, kwargs]")
    headers = models.JSONField(default=dict, blank=True)
    eta = models.DateTimeField(default=timezone.now, help_text="not run before this time")
    expires = models.DateTimeField(null=True, blank=True,
                                   help_text="revoked if not started by this time")
    acks_late = models.BooleanField(default=False)
    ignore_result = models.BooleanField(default=False)

    # Delivery.
    retries = models.IntegerField(default=0, help_text="retries so far")
    attempt = models.IntegerField(default=0, help_text="claims so far; fences late writes")
    worker = models.CharField(max_length=255, blank=True, default="")
    lease_expires = models.DateTimeField(null=True, blank=True)

    # The outcome.
    result = models.TextField(null=True, blank=True,
                              help_text="encoded return value or progress meta")
    result_content_type = models.CharField(max_length=64, blank=True, default="")
    custom_state = models.CharField(max_length=64, blank=True, default="",
                                    help_text="state reported by update_state() while running")
    exc_type = models.CharField(max_length=255, blank=True, default="")
    exc_message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    runtime = models.FloatField(null=True, blank=True, help_text="seconds")

    # Timeline.
    created_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    # Worker-runtime options (issue: unique tasks, concurrency caps).
    unique_key = models.CharField(max_length=255, null=True, blank=True,
                                  help_text="at most one unfinished task per key")
    unique_until = models.DateTimeField(null=True, blank=True,
                                        help_text="the unique key stops holding after this")
    concurrency_key = models.CharField(max_length=255, null=True, blank=True,
                                       help_text="tasks sharing a cluster-wide concurrency cap")

    # Workflow links (canvas).
    parent_id = models.UUIDField(null=True, blank=True)
    root_id = models.UUIDField(null=True, blank=True)
    group_id = models.UUIDField(null=True, blank=True)

    class Meta:
        verbose_name = "task"
        verbose_name_plural = "tasks"
        indexes = [
            # Serves the claim: only waiting rows are in it, in claim order, so
            # its size follows the backlog, not the history.
            models.Index(
                "queue", models.F("priority").desc(), "eta", "id",
                name="djtasks_task_ready_idx",
                condition=Q(state__in=sorted(states.WAITING_STATES)),
            ),
            # Serves lease renewal and rescue: only rows a worker holds.
            models.Index(
                "lease_expires", name="djtasks_task_held_idx",
                condition=Q(state__in=[states.RECEIVED, states.STARTED]),
            ),
            models.Index("state", "done_at", name="djtasks_task_done_idx"),
            models.Index("name", "created_at", name="djtasks_task_name_idx"),
            models.Index(
                "concurrency_key", "state", name="djtasks_task_conc_idx",
                condition=Q(concurrency_key__isnull=False)
                & Q(state__in=sorted(states.UNREADY_STATES)),
            ),
        ]
        constraints = [
            # The guard of unique tasks: a duplicate insert fails here, so two
            # concurrent callers cannot both pass a check-then-insert.
            models.UniqueConstraint(
                fields=["unique_key"], name="djtasks_task_unique_key",
                condition=Q(unique_key__isnull=False)
                & Q(state__in=sorted(states.UNREADY_STATES)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}[{self.id}] {self.state}"


class TaskType(models.Model):
    """Cluster-wide state of one task name: runtime overrides and its rate limiter."""

    name = models.CharField(max_length=255, primary_key=True)
    rate_limit = models.CharField(max_length=32, blank=True, default="",
                                  help_text="overrides the task's rate_limit (taskctl)")
    time_limit = models.FloatField(null=True, blank=True)
    soft_time_limit = models.FloatField(null=True, blank=True)
    # Generic cell rate algorithm: the theoretical arrival time of the next run.
    rate_tat = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "task type"

    def __str__(self) -> str:
        return self.name


class ConcurrencyLock(models.Model):
    """One row per concurrency key, locked while a claimer counts its running tasks."""

    key = models.CharField(max_length=255, primary_key=True)

    def __str__(self) -> str:
        return self.key


class PausedQueue(models.Model):
    """A queue no worker claims from until it is resumed."""

    name = models.CharField(max_length=100, primary_key=True)
    paused_at = models.DateTimeField(default=timezone.now)
    paused_by = models.CharField(max_length=255, blank=True, default="")

    def __str__(self) -> str:
        return self.name


class ControlCommand(models.Model):
    """A remote-control command for workers (``taskctl``); answered by :class:`ControlReply`."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    command = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict, blank=True)
    destination = models.JSONField(default=list, blank=True,
                                   help_text="worker names; empty means every worker")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index("expires_at", name="djtasks_control_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.command} {self.arguments}"


class ControlReply(models.Model):
    """A worker's answer to a :class:`ControlCommand`."""

    command = models.ForeignKey(ControlCommand, on_delete=models.CASCADE,
                                related_name="replies")
    worker = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    reply = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["command", "worker"],
                                               name="djtasks_control_one_reply")]

    def __str__(self) -> str:
        return f"{self.worker}: {self.command_id}"


class Worker(models.Model):
    """A running (or recently seen) ``taskworker`` process, kept by its heartbeats."""

    name = models.CharField(max_length=255, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.IntegerField()
    pool = models.CharField(max_length=16)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    processed = models.BigIntegerField(default=0)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
