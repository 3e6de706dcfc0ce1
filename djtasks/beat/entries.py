"""Schedule entries: ``DJTASKS_BEAT_SCHEDULE`` parsed and synced into rows, and validation.

The sync rule: settings own the rows they create (marked "settings") until
someone edits such a row in the admin; from then on the admin's version is
kept, and a warning at each sync says that settings changed without effect.
The admin action "Reset to DJTASKS_BEAT_SCHEDULE" makes the row follow
settings again. Rows made in the admin are never touched by the sync.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q

from .. import queue, schedules, serialization
from ..conf import settings
from ..exceptions import DjtasksError
from ..models import PeriodicTask
from ..registry import tasks as registry

logger = logging.getLogger("djtasks.beat")

ENTRY_KEYS = (
    "task",
    "schedule",
    "args",
    "kwargs",
    "options",
    "timezone",
    "catch_up",
    "description",
)
OPTION_KEYS = ("queue", "priority", "expires")
#: The fields a settings entry defines (and the admin may edit).
DEFINITION = (
    "task",
    "description",
    "kind",
    "every",
    "period",
    "crontab",
    "clocked_at",
    "timezone",
    "catch_up",
    "args",
    "kwargs",
    "queue",
    "priority",
    "expires",
)


def entry_fields(name: Any, spec: Any) -> dict[str, Any]:
    """The :class:`PeriodicTask` fields of one ``DJTASKS_BEAT_SCHEDULE`` entry.

    :raises ValueError: naming the entry and what is wrong with it.
    """
    where = f"DJTASKS_BEAT_SCHEDULE[{name!r}]"
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError(f"{where}: the name must be a non-empty string of at most 200 characters")
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a dict with 'task' and 'schedule'")
    unknown = sorted(set(spec) - set(ENTRY_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: "
            f"{', '.join(ENTRY_KEYS)})"
        )
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise ValueError(f"{where}: 'task' must be a task name")
    if "schedule" not in spec:
        raise ValueError(f"{where}: 'schedule' is missing")
    try:
        schedule = schedules.from_setting(spec["schedule"])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    fields: dict[str, Any] = {
        "task": task,
        "description": spec.get("description", ""),
        "kind": schedule.kind,
        "every": None,
        "period": "",
        "crontab": "",
        "clocked_at": None,
        "timezone": spec.get("timezone", ""),
        "catch_up": spec.get("catch_up", "once"),
        "args": list(spec.get("args", ()))
        if isinstance(spec.get("args", ()), list | tuple)
        else spec["args"],
        "kwargs": spec.get("kwargs", {}),
        "queue": "",
        "priority": None,
        "expires": None,
    }
    if isinstance(schedule, schedules.Interval):
        fields["every"], fields["period"] = schedule.as_every_period()
    elif isinstance(schedule, schedules.Crontab):
        fields["crontab"] = schedule.expression
    elif isinstance(schedule, schedules.Clocked):
        fields["clocked_at"] = schedule.at
    options = spec.get("options", {})
    if not isinstance(options, dict) or set(options) - set(OPTION_KEYS):
        raise ValueError(
            f"{where}: 'options' must be a dict with keys among {', '.join(OPTION_KEYS)}"
        )
    fields["queue"] = options.get("queue") or ""
    fields["priority"] = options.get("priority")
    expires = options.get("expires")
    if isinstance(expires, dt.timedelta):
        expires = expires.total_seconds()
    fields["expires"] = (
        float(expires)
        if isinstance(expires, int | float) and not isinstance(expires, bool)
        else expires
    )
    if not isinstance(fields["description"], str):
        raise ValueError(f"{where}: 'description' must be a string")
    if not isinstance(fields["timezone"], str):
        raise ValueError(f"{where}: 'timezone' must be a zone name such as 'Europe/Paris'")
    found = problems(PeriodicTask(name=name, **fields), check_task=False)
    if found:
        raise ValueError(f"{where}: " + "; ".join(f"{field}: {msg}" for field, msg in found))
    return fields


def settings_entries() -> dict[str, dict[str, Any]]:
    """Every valid entry of ``DJTASKS_BEAT_SCHEDULE``; invalid ones are logged and left out."""
    entries = {}
    for name, spec in (settings.BEAT_SCHEDULE or {}).items():
        try:
            entries[name] = entry_fields(name, spec)
        except ValueError as exc:
            logger.error("%s (entry ignored; see manage.py check)", exc)
    return entries


def _definition(values: dict[str, Any]) -> dict[str, Any]:
    """A JSON-able form of the defining fields, to compare a row with its settings entry."""
    out = {k: values[k] for k in DEFINITION}
    if out["clocked_at"] is not None:
        out["clocked_at"] = out["clocked_at"].astimezone(dt.UTC).isoformat()
    if out["expires"] is not None:
        out["expires"] = float(out["expires"])
    return json.loads(json.dumps(out))


def _row_definition(row: PeriodicTask) -> dict[str, Any]:
    return _definition({k: getattr(row, k) for k in DEFINITION})


def edited_since_sync(row: PeriodicTask) -> bool:
    """Whether a settings row was changed (in the admin) since beat last synced it."""
    return (
        row.source == PeriodicTask.FROM_SETTINGS
        and row.settings_definition is not None
        and _row_definition(row) != row.settings_definition
    )


def sync_settings() -> None:
    """Bring ``DJTASKS_BEAT_SCHEDULE`` into the schedule table (the leader does it).

    - A new entry becomes a row marked "settings".
    - A changed entry updates its row, unless the row was edited in the admin
      since the last sync: then the admin's version stays and a warning says so.
    - A row made in the admin is never touched, even if it has the name of
      an entry (warning).
    - A settings row whose entry is gone is deleted; if it was edited in the
      admin it is kept and becomes an admin row.
    """
    alias = queue.db_alias()
    entries = settings_entries()
    rows = {
        r.name: r
        for r in PeriodicTask.objects.using(alias).filter(
            Q(name__in=list(entries)) | Q(source=PeriodicTask.FROM_SETTINGS)
        )
    }
    for name, fields in entries.items():
        wanted = _definition(fields)
        row = rows.get(name)
        if row is None:
            PeriodicTask(
                name=name, source=PeriodicTask.FROM_SETTINGS, settings_definition=wanted, **fields
            ).save(using=alias)
            logger.info("beat: added %r from DJTASKS_BEAT_SCHEDULE", name)
        elif row.source != PeriodicTask.FROM_SETTINGS:
            logger.warning(
                "beat: DJTASKS_BEAT_SCHEDULE[%r] is ignored: a schedule of that "
                "name was made in the admin",
                name,
            )
        elif row.settings_definition == wanted:
            continue
        elif edited_since_sync(row):
            logger.warning(
                "beat: DJTASKS_BEAT_SCHEDULE[%r] changed, but its row was edited "
                "in the admin; keeping the admin's version (use the admin action "
                "'Reset to DJTASKS_BEAT_SCHEDULE' to follow settings again)",
                name,
            )
        else:
            apply_definition(row, fields)
            logger.info("beat: updated %r from DJTASKS_BEAT_SCHEDULE", name)
    for name, row in rows.items():
        if row.source != PeriodicTask.FROM_SETTINGS or name in entries:
            continue
        if edited_since_sync(row):
            row.source, row.settings_definition = PeriodicTask.FROM_ADMIN, None
            row.save(using=alias, update_fields=["source", "settings_definition"])
            logger.warning(
                "beat: %r left DJTASKS_BEAT_SCHEDULE but was edited in the admin; "
                "kept as an admin schedule",
                name,
            )
        else:
            row.delete(using=alias)
            logger.info("beat: removed %r (no longer in DJTASKS_BEAT_SCHEDULE)", name)


def apply_definition(row: PeriodicTask, fields: dict[str, Any]) -> None:
    """Write a settings definition into ``row`` (and remember it as synced)."""
    for key, value in fields.items():
        setattr(row, key, value)
    row.settings_definition = _definition(fields)
    row.save(
        using=row._state.db or queue.db_alias(),
        update_fields=[*DEFINITION, "settings_definition", "updated_at"],
    )


# -- validation ----------------------------------------------------------------------


def validate_periodic_task(row: PeriodicTask) -> None:
    """``PeriodicTask.clean()``: refuse what beat could not run, field by field."""
    errors: dict[str, list[str]] = {}
    for field, message in problems(row, check_task=True):
        errors.setdefault(field, []).append(message)
    if errors:
        raise ValidationError(errors)


def problems(row: PeriodicTask, check_task: bool = True) -> list[tuple[str, str]]:
    """What is wrong with ``row``, as ``(field name, message)`` pairs."""
    from ..task import check_priority, check_queue

    found: list[tuple[str, str]] = []
    if check_task and row.task and row.task not in registry:
        found.append(
            (
                "task",
                f"task {row.task!r} is not registered in this process (is its "
                "module in an installed app's tasks.py or in DJTASKS_IMPORTS?)",
            )
        )
    if row.kind == PeriodicTask.INTERVAL:
        if isinstance(row.every, bool) or not isinstance(row.every, int) or row.every < 1:
            found.append(("every", "an interval needs a whole number ≥ 1"))
        if row.period not in schedules.PERIODS:
            found.append(("period", "an interval needs a period: seconds, minutes, hours or days"))
    elif row.kind == PeriodicTask.CRONTAB:
        try:
            schedules.validate_expression(row.crontab)
        except ValueError as exc:
            found.append(("crontab", str(exc)))
    elif row.kind == PeriodicTask.CLOCKED:
        if row.clocked_at is None:
            found.append(("clocked_at", "a one-off needs the date and time to run at"))
    else:
        found.append(("kind", f"unknown schedule type {row.kind!r}"))
    if not isinstance(row.timezone, str):
        found.append(("timezone", "the time zone must be a name such as 'Europe/Paris'"))
    else:
        try:
            schedules.get_zone(row.timezone)
        except ValueError as exc:
            found.append(("timezone", str(exc)))
    if row.start_at and row.end_at and row.end_at <= row.start_at:
        found.append(("end_at", "the end must be after the start"))
    if row.catch_up not in (PeriodicTask.CATCH_UP_ONCE, PeriodicTask.CATCH_UP_SKIP):
        found.append(("catch_up", f"catch_up must be 'once' or 'skip', not {row.catch_up!r}"))
    found += _argument_problems(row)
    if row.queue:
        try:
            check_queue(row.queue)
        except ValueError as exc:
            found.append(("queue", str(exc)))
    if row.priority is not None:
        try:
            check_priority(row.priority)
        except (TypeError, ValueError) as exc:
            found.append(("priority", str(exc)))
    if row.expires is not None and (
        isinstance(row.expires, bool)
        or not isinstance(row.expires, int | float)
        or row.expires <= 0
    ):
        found.append(("expires", "expires is a number of seconds > 0 (or empty)"))
    return found


def _argument_problems(row: PeriodicTask) -> list[tuple[str, str]]:
    found = []
    if not isinstance(row.args, list):
        found.append(("args", 'args must be a JSON list, e.g. [1, "two"]'))
    if not isinstance(row.kwargs, dict):
        found.append(("kwargs", 'kwargs must be a JSON object, e.g. {"size": 128}'))
    if found:
        return found
    try:
        json.dumps([row.args, row.kwargs])
    except (TypeError, ValueError) as exc:
        return [("args", f"args and kwargs must be plain JSON values: {exc}")]
    if row.task in registry:
        task = registry.get(row.task)
        try:
            task._check_arguments(row.args, row.kwargs)
            serialization.encode_arguments(
                task.name, row.args, row.kwargs, task.serializer or settings.TASK_SERIALIZER
            )
        except (TypeError, ValueError, DjtasksError) as exc:
            return [("args", str(exc))]
    return []
