"""The tables: a task is a row (:class:`TaskRecord`), a worker is a row (:class:`Worker`)."""

from __future__ import annotations

from typing import Any

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
    expires = models.DateTimeField(
        null=True, blank=True, help_text="revoked if not started by this time"
    )
    acks_late = models.BooleanField(default=False)
    ignore_result = models.BooleanField(default=False)

    # Delivery.
    retries = models.IntegerField(default=0, help_text="retries so far")
    attempt = models.IntegerField(default=0, help_text="claims so far; fences late writes")
    worker = models.CharField(max_length=255, blank=True, default="")
    lease_expires = models.DateTimeField(null=True, blank=True)

    # The outcome.
    # NULL, not "": no value at all (ignore_result, a failure), as opposed to
    # an encoded one.
    result = models.TextField(  # noqa: DJ001
        null=True,
        blank=True,
        help_text="encoded return value or progress meta",
    )
    result_content_type = models.CharField(max_length=64, blank=True, default="")
    custom_state = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="state reported by update_state() while running",
    )
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
    # NULL keeps a row out of the partial unique index and the limit index.
    unique_key = models.CharField(  # noqa: DJ001
        max_length=255,
        null=True,
        blank=True,
        help_text="at most one unfinished task per key",
    )
    unique_until = models.DateTimeField(
        null=True, blank=True, help_text="the unique key stops holding after this"
    )
    concurrency_key = models.CharField(  # noqa: DJ001
        max_length=255,
        null=True,
        blank=True,
        help_text="tasks sharing a cluster-wide concurrency cap",
    )

    # Workflow links (canvas).
    parent_id = models.UUIDField(null=True, blank=True)
    root_id = models.UUIDField(null=True, blank=True)
    group_id = models.UUIDField(null=True, blank=True)

    class Meta:
        verbose_name = "task"
        verbose_name_plural = "tasks"
        indexes = [
            # Serves the claim: only waiting rows are in it, in claim order, so
            # its size follows the backlog, not the history. Rows under a rate
            # limit or concurrency cap are claimed through the next index.
            models.Index(
                "queue",
                models.F("priority").desc(),
                "eta",
                "id",
                name="djtasks_task_ready_idx",
                condition=Q(state__in=sorted(states.WAITING_STATES))
                & Q(concurrency_key__isnull=True),
            ),
            # Serves lease renewal and rescue: only rows a worker holds.
            models.Index(
                "lease_expires",
                name="djtasks_task_held_idx",
                condition=Q(state__in=[states.RECEIVED, states.STARTED]),
            ),
            models.Index("state", "done_at", name="djtasks_task_done_idx"),
            models.Index("name", "created_at", name="djtasks_task_name_idx"),
            # Workflow lookups (a chord's members, a task's children); only
            # canvas rows carry these ids, so plain tasks pay nothing.
            models.Index(
                "group_id", name="djtasks_task_group_idx", condition=Q(group_id__isnull=False)
            ),
            models.Index(
                "parent_id", name="djtasks_task_parent_idx", condition=Q(parent_id__isnull=False)
            ),
            models.Index(
                "concurrency_key",
                "state",
                name="djtasks_task_conc_idx",
                condition=Q(concurrency_key__isnull=False)
                & Q(state__in=sorted(states.UNREADY_STATES)),
            ),
        ]
        constraints = [
            # The guard of unique tasks: a duplicate insert fails here, so two
            # concurrent callers cannot both pass a check-then-insert.
            models.UniqueConstraint(
                fields=["unique_key"],
                name="djtasks_task_unique_key",
                condition=Q(unique_key__isnull=False) & Q(state__in=sorted(states.UNREADY_STATES)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}[{self.id}] {self.state}"


class TaskGroup(models.Model):
    """A group of tasks (``group``), or a chord's header with the body to run after it.

    ``remaining`` counts members not finished; it is decremented in the same
    transaction that records each member's final state, so exactly one
    member's transaction sees it reach zero and enqueues the body.
    """

    id = models.UUIDField(primary_key=True)
    member_ids = models.JSONField(default=list)
    size = models.IntegerField()
    remaining = models.IntegerField()
    failed = models.BooleanField(default=False)
    body = models.JSONField(null=True, blank=True, help_text="the chord body signature")
    body_id = models.UUIDField(null=True, blank=True, help_text="the chord's result id")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "task group"

    def __str__(self) -> str:
        return f"{'chord' if self.body else 'group'} {self.id}"


class TaskType(models.Model):
    """Cluster-wide state of one task name: runtime overrides and its rate limiter."""

    name = models.CharField(max_length=255, primary_key=True)
    rate_limit = models.CharField(
        max_length=32, blank=True, default="", help_text="overrides the task's rate_limit (taskctl)"
    )
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
    destination = models.JSONField(
        default=list, blank=True, help_text="worker names; empty means every worker"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index("expires_at", name="djtasks_control_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.command} {self.arguments}"


class ControlReply(models.Model):
    """A worker's answer to a :class:`ControlCommand`."""

    command = models.ForeignKey(ControlCommand, on_delete=models.CASCADE, related_name="replies")
    worker = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    reply = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["command", "worker"], name="djtasks_control_one_reply")
        ]

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


# -- periodic tasks (beat) -----------------------------------------------------------

_now = timezone.now  # the field called "timezone" below hides the module in the class body


class PeriodicTask(models.Model):
    """A schedule entry: which task ``taskbeat`` enqueues, and when.

    Made in the admin, or synced from ``DJTASKS_BEAT_SCHEDULE`` (``source``
    "settings"). The last four fields are beat's own bookkeeping; beat writes
    them with ``UPDATE``s, and the admin saves only the other fields, so an
    edit never overwrites a run count. A change of the schedule (type, times,
    zone, start, end) or re-enabling clears ``next_run_at``, and beat computes
    it afresh from the current time: no catch-up run for the time it was off.
    """

    INTERVAL, CRONTAB, CLOCKED = "interval", "crontab", "clocked"
    KINDS = [(INTERVAL, "interval"), (CRONTAB, "crontab"), (CLOCKED, "one-off")]
    PERIODS = [("seconds", "seconds"), ("minutes", "minutes"), ("hours", "hours"), ("days", "days")]
    CATCH_UP_ONCE, CATCH_UP_SKIP = "once", "skip"
    CATCH_UPS = [(CATCH_UP_ONCE, "run once now"), (CATCH_UP_SKIP, "skip to the next time")]
    FROM_ADMIN, FROM_SETTINGS = "admin", "settings"
    SOURCES = [(FROM_ADMIN, "admin"), (FROM_SETTINGS, "DJTASKS_BEAT_SCHEDULE")]

    name = models.CharField(max_length=200, unique=True, help_text="a unique label")
    task = models.CharField(max_length=255, help_text="the registered name of the task")
    description = models.TextField(blank=True, default="")
    enabled = models.BooleanField(default=True)

    # When.
    kind = models.CharField("schedule", max_length=16, choices=KINDS, default=INTERVAL)
    every = models.PositiveIntegerField(null=True, blank=True, help_text="interval: every N …")
    period = models.CharField(
        max_length=16,
        choices=PERIODS,
        blank=True,
        default="",
        help_text="interval: … seconds, minutes, hours or days",
    )
    crontab = models.CharField(
        "cron expression",
        max_length=200,
        blank=True,
        default="",
        help_text='crontab: minute hour day-of-month month day-of-week, e.g. "0 7 * * 1-5"',
    )
    clocked_at = models.DateTimeField(
        "run once at", null=True, blank=True, help_text="one-off: the task runs once, at this time"
    )
    timezone = models.CharField(
        "time zone",
        max_length=64,
        blank=True,
        default="",
        help_text="crontab times are read in this zone (e.g. Europe/Paris); empty: TIME_ZONE",
    )
    start_at = models.DateTimeField(
        "start", null=True, blank=True, help_text="no run before this time"
    )
    end_at = models.DateTimeField("end", null=True, blank=True, help_text="no run after this time")
    catch_up = models.CharField(
        max_length=8,
        choices=CATCH_UPS,
        default=CATCH_UP_ONCE,
        help_text="runs missed while no beat ran: one run now, or none",
    )

    # What.
    args = models.JSONField(default=list, blank=True, help_text='a JSON list, e.g. [1, "a"]')
    kwargs = models.JSONField(
        default=dict, blank=True, help_text='a JSON object, e.g. {"size": 128}'
    )
    queue = models.CharField(
        max_length=100, blank=True, default="", help_text="empty: the task's route"
    )
    priority = models.SmallIntegerField(
        null=True, blank=True, help_text="-100..100, higher runs first; empty: the task's route"
    )
    expires = models.FloatField(
        null=True,
        blank=True,
        help_text="seconds: a run not started this long after it was enqueued is revoked",
    )

    # Where it came from.
    source = models.CharField(max_length=16, choices=SOURCES, default=FROM_ADMIN, editable=False)
    settings_definition = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text="the DJTASKS_BEAT_SCHEDULE definition last synced into this row",
    )
    created_at = models.DateTimeField(default=_now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    # Beat's bookkeeping.
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    total_run_count = models.PositiveIntegerField("total runs", default=0, editable=False)

    class Meta:
        verbose_name = "periodic task"
        verbose_name_plural = "periodic tasks"
        ordering = ["name"]
        indexes = [
            # What beat asks every turn: the enabled entries due first.
            models.Index("next_run_at", name="djtasks_periodic_due_idx", condition=Q(enabled=True)),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        loaded = getattr(self, "_loaded", None)
        if loaded is not None and self._timing() != loaded and self.next_run_at == loaded[-1]:
            # The schedule changed (or the entry was switched back on): beat
            # computes the next run afresh. Leave a next_run_at set on purpose.
            self.next_run_at = None
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "next_run_at"}
        super().save(*args, **kwargs)
        self._loaded = self._timing()
        from .beat import notify_beat

        notify_beat(kwargs.get("using") or self._state.db)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        result = super().delete(*args, **kwargs)
        from .beat import notify_beat

        notify_beat(kwargs.get("using") or self._state.db)
        return result

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, **kwargs: Any) -> PeriodicTask:
        # **kwargs: Django 6.1 passes fetch_mode=; 5.2 passes nothing.
        row = super().from_db(db, field_names, values, **kwargs)
        row._loaded = row._timing()
        return row

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._loaded = self._timing()

    def _timing(self) -> tuple[Any, ...]:
        return (
            self.kind,
            self.every,
            self.period,
            self.crontab,
            self.clocked_at,
            self.timezone,
            self.start_at,
            self.end_at,
            self.enabled,
            self.next_run_at,
        )

    def clean(self) -> None:
        from .beat import validate_periodic_task

        validate_periodic_task(self)

    # -- the schedule -------------------------------------------------------------

    def get_zone(self) -> Any:
        """The ``ZoneInfo`` crontab times are read in."""
        from .schedules import get_zone

        return get_zone(self.timezone)

    def get_schedule(self) -> Any:
        """The :class:`~djtasks.schedules.Schedule` of this entry (``ValueError`` if invalid)."""
        from . import schedules

        if self.kind == self.INTERVAL:
            if not self.every or self.period not in schedules.PERIODS:
                raise ValueError("an interval needs every ≥ 1 and a period")
            return schedules.Interval(self.every * schedules.PERIODS[self.period])
        if self.kind == self.CRONTAB:
            return schedules.Crontab.from_expression(self.crontab)
        if self.kind == self.CLOCKED:
            if self.clocked_at is None:
                raise ValueError("a one-off needs a time")
            return schedules.Clocked(self.clocked_at)
        raise ValueError(f"unknown schedule type {self.kind!r}")

    def describe_schedule(self) -> str:
        """Human-readable: "every 5 minutes", "at 07:00 on Monday to Friday (Europe/Paris)"."""
        try:
            schedule = self.get_schedule()
            zone = self.get_zone() if self.kind != self.INTERVAL else None
        except ValueError as exc:
            return f"invalid: {exc}"
        return schedule.describe(zone)

    def upcoming(self, n: int = 5, now: Any = None) -> list[Any]:
        """The next ``n`` run times (aware, UTC) as beat will compute them."""
        from .beat import upcoming

        return upcoming(self, n, now or _now())


class ScheduleTick(models.Model):
    """A periodic run beat enqueued: the (schedule, due time) key, unique.

    Inserted in the same transaction as the task row, so both or neither
    exist, and a second beat that believed it led cannot enqueue the same
    tick again. Pruned after a day.
    """

    periodic_task = models.ForeignKey(PeriodicTask, on_delete=models.CASCADE, related_name="ticks")
    due_at = models.DateTimeField(help_text="the scheduled time of this run")
    task_id = models.UUIDField(help_text="the task row this tick enqueued")
    enqueued_at = models.DateTimeField()
    beat = models.CharField(
        max_length=255, blank=True, default="", help_text="the taskbeat that enqueued it"
    )

    class Meta:
        verbose_name = "periodic run"
        ordering = ["-due_at"]
        constraints = [
            models.UniqueConstraint(fields=["periodic_task", "due_at"], name="djtasks_tick_once")
        ]
        indexes = [models.Index("enqueued_at", name="djtasks_tick_age_idx")]

    def __str__(self) -> str:
        return f"{self.periodic_task_id} @ {self.due_at.isoformat()}"


class BeatLease(models.Model):
    """Which ``taskbeat`` leads.

    With the lease election (SQLite; ``DJTASKS_BEAT_ELECTION = "lease"``)
    this row is the lock: the holder renews ``expires_at`` and anyone may
    take it once it passes. With PostgreSQL's advisory lock it only tells
    the admin who leads.
    """

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=255, blank=True, default="")
    acquired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.holder or '-'}"
