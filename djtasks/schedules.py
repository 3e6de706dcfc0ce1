"""When periodic tasks run: intervals, crontabs and one-off times.

Each schedule answers one question, :meth:`Schedule.next_after`: the first
run time strictly after an instant. Times go in and come out timezone-aware
(UTC); crontabs are read in a time zone (the entry's, default ``TIME_ZONE``).

- :class:`Interval`: every N seconds of elapsed time, counted from an anchor
  (the entry's start time, or its previous run). DST does not affect it.
- :class:`Crontab`: five-field cron wall-clock times through croniter
  (``crontab(minute=, hour=, day_of_week=, day_of_month=, month_of_year=)``
  builds one as in Celery). When day of month and day of week are both
  restricted, a day matches if either does, as in cron(8); write
  ``day_of_week="mon#1"`` for "the first Monday".
- :class:`Clocked`: once, at a given instant.

Daylight saving time, for crontabs (the rule of cron(8), made exact):

- Clocks go back (a wall-clock hour repeats). A crontab whose hour field is
  ``*`` follows real time and runs in both passes (an hourly job stays
  hourly). Any other crontab runs a repeated time once, at its first
  occurrence: ``30 1 * * *`` runs at 01:30 before the change, not again an
  hour later.
- Clocks go forward (a wall-clock hour does not exist). A crontab whose hour
  field is ``*`` just goes on in real time (the missing minutes never came).
  Any other crontab runs a skipped time once, at the end of the gap:
  ``30 2 * * *`` runs at 03:00 on that day; several skipped times (or a
  skipped time and 03:00 itself) make one run.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

UTC = dt.UTC

#: Interval units the admin offers, in seconds.
PERIODS: dict[str, int] = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}

#: ``@daily`` and friends, as five fields.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# No real zone moves its clocks back by more than this (Troll: 2 h).
_MAX_SHIFT = dt.timedelta(hours=3)
_PROBES = [dt.timedelta(minutes=30 * k) for k in range(1, 7)]
# Enough wall-clock candidates to cross any gap; a day of minutes and more.
_MAX_CANDIDATES = 5000


def get_zone(name: str | None) -> ZoneInfo:
    """The zone called ``name`` (``None`` or ``""``: Django's ``TIME_ZONE``).

    :raises ValueError: for a name the tz database does not know.
    """
    if not name:
        from django.conf import settings

        name = settings.TIME_ZONE or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use a tz database name such as 'Europe/Paris' or 'UTC')"
        ) from None


def _aware(value: dt.datetime, what: str = "time") -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, not naive {value!r}")
    return value.astimezone(UTC)


class Schedule:
    """Base class: a rule that yields run times."""

    kind: ClassVar[str] = ""

    def next_after(
        self, after: dt.datetime, *, anchor: dt.datetime | None = None, tz: ZoneInfo | None = None
    ) -> dt.datetime | None:
        """The first run time strictly after ``after`` (aware, UTC), or ``None``.

        :param anchor: a run time the schedule is counted from (intervals).
        :param tz: the zone wall-clock schedules are read in (crontabs).
        """
        raise NotImplementedError

    def upcoming(
        self,
        after: dt.datetime,
        n: int = 5,
        *,
        anchor: dt.datetime | None = None,
        tz: ZoneInfo | None = None,
    ) -> list[dt.datetime]:
        """The next ``n`` run times after ``after``."""
        times: list[dt.datetime] = []
        when: dt.datetime | None = after
        while when is not None and len(times) < n:
            when = self.next_after(when, anchor=anchor, tz=tz)
            if when is not None:
                times.append(when)
        return times

    def describe(self, tz: ZoneInfo | None = None) -> str:
        """A human-readable description, such as ``"every 5 minutes"``."""
        raise NotImplementedError


# -- interval ---------------------------------------------------------------------


@dataclass(frozen=True)
class Interval(Schedule):
    """Every ``every`` of elapsed time: ``Interval(timedelta(minutes=5))`` or ``Interval(300)``.

    Whole seconds, at least one. Runs fall on ``anchor + k × every``.
    """

    every: dt.timedelta
    kind: ClassVar[str] = "interval"

    def __init__(self, every: dt.timedelta | float) -> None:
        if isinstance(every, bool) or not isinstance(every, int | float | dt.timedelta):
            raise ValueError(f"an interval is a number of seconds or a timedelta, not {every!r}")
        if not isinstance(every, dt.timedelta):
            every = dt.timedelta(seconds=every)
        if every < dt.timedelta(seconds=1) or every % dt.timedelta(seconds=1):
            raise ValueError(
                f"an interval must be a whole number of seconds, at least 1 "
                f"(got {every.total_seconds():g} s)"
            )
        object.__setattr__(self, "every", every)

    @property
    def seconds(self) -> int:
        return int(self.every.total_seconds())

    def as_every_period(self) -> tuple[int, str]:
        """``(every, period)`` in the largest unit that divides it: 300 s → (5, "minutes")."""
        for period, size in sorted(PERIODS.items(), key=lambda p: -p[1]):
            if self.seconds % size == 0:
                return self.seconds // size, period
        return self.seconds, "seconds"  # pragma: no cover - seconds always divide

    def next_after(
        self, after: dt.datetime, *, anchor: dt.datetime | None = None, tz: ZoneInfo | None = None
    ) -> dt.datetime:
        after = _aware(after)
        if anchor is None:
            return after + self.every
        anchor = _aware(anchor, "anchor")
        # Integer arithmetic on timedeltas: no float drift over millions of runs.
        steps = (after - anchor) // self.every + 1
        return anchor + steps * self.every

    def describe(self, tz: ZoneInfo | None = None) -> str:
        every, period = self.as_every_period()
        unit = period[:-1]
        return f"every {unit}" if every == 1 else f"every {every} {period}"


# -- crontab ----------------------------------------------------------------------


def _field(value: Any, name: str) -> str:
    if isinstance(value, bool):
        raise ValueError(f"crontab {name} must be a string, an int or ints, not {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or any(c.isspace() for c in text):
            raise ValueError(f"crontab {name} must be one cron field without spaces, not {value!r}")
        return text
    if isinstance(value, Iterable):
        items = list(value)
        if items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return ",".join(str(v) for v in sorted(set(items)))
    raise ValueError(f"crontab {name} must be a string, an int or ints, not {value!r}")


@dataclass(frozen=True)
class Crontab(Schedule):
    """Cron wall-clock times, read in a time zone.

    ``Crontab(minute=0, hour=7, day_of_week="mon-fri")`` as in Celery, or
    :meth:`from_expression` with a five-field string (``"0 7 * * 1-5"``,
    also ``@daily`` and friends). An expression that cannot work raises
    ``ValueError`` saying why.
    """

    expression: str
    kind: ClassVar[str] = "crontab"

    def __init__(
        self,
        minute: Any = "*",
        hour: Any = "*",
        day_of_week: Any = "*",
        day_of_month: Any = "*",
        month_of_year: Any = "*",
    ) -> None:
        expression = " ".join(
            [
                _field(minute, "minute"),
                _field(hour, "hour"),
                _field(day_of_month, "day_of_month"),
                _field(month_of_year, "month_of_year"),
                _field(day_of_week, "day_of_week"),
            ]
        )
        object.__setattr__(self, "expression", validate_expression(expression))

    @classmethod
    def from_expression(cls, expression: str) -> Crontab:
        """A crontab from a five-field cron string."""
        fields = validate_expression(expression).split()
        minute, hour, dom, month, dow = fields
        return cls(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow)

    @property
    def minute(self) -> str:
        return self.expression.split()[0]

    @property
    def hour(self) -> str:
        return self.expression.split()[1]

    @property
    def day_of_month(self) -> str:
        return self.expression.split()[2]

    @property
    def month_of_year(self) -> str:
        return self.expression.split()[3]

    @property
    def day_of_week(self) -> str:
        return self.expression.split()[4]

    def __str__(self) -> str:
        return self.expression

    @property
    def every_hour(self) -> bool:
        """Whether the hour field covers all 24 hours (then DST follows real time)."""
        return croniter.expand(self.expression)[0][1] == ["*"]

    def next_after(
        self, after: dt.datetime, *, anchor: dt.datetime | None = None, tz: ZoneInfo | None = None
    ) -> dt.datetime | None:
        zone = tz or get_zone(None)
        after = _aware(after)
        every_hour = self.every_hour
        # If the clocks go back soon, runs just after `after` can have earlier
        # wall-clock times than `after` itself: start that much earlier.
        offset = after.astimezone(zone).utcoffset() or dt.timedelta(0)
        lookback = max(
            [dt.timedelta(0)]
            + [
                offset - ((after + p).astimezone(zone).utcoffset() or dt.timedelta(0))
                for p in _PROBES
            ]
        )
        start = after.astimezone(zone).replace(tzinfo=None) - lookback
        try:
            walls = croniter(self.expression, start)
            best: dt.datetime | None = None
            best_wall: dt.datetime | None = None
            for _ in range(_MAX_CANDIDATES):
                wall = walls.get_next(dt.datetime)
                if best_wall is not None and wall > best_wall + lookback:
                    break
                for when in _instants(wall, zone, every_hour):
                    if when > after and (best is None or when < best):
                        best, best_wall = when, wall
                if best is not None and not lookback:
                    break
        except CroniterBadDateError:
            return None
        return best

    def describe(self, tz: ZoneInfo | None = None) -> str:
        text = describe_expression(self.expression)
        return f"{text} ({tz.key})" if tz is not None else text


def validate_expression(expression: Any) -> str:
    """Return ``expression`` normalised to five fields, or raise ``ValueError`` saying why."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression is a string, not {type(expression).__name__}")
    text = " ".join(expression.split())
    text = ALIASES.get(text.lower(), text)
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day-of-month month "
            f"day-of-week), {text!r} has {len(fields)}"
        )
    try:
        croniter.expand(text)
        # An expression can parse and still never match (31 February).
        croniter(text, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterBadDateError:
        raise ValueError(f"{text!r} never matches a date") from None
    except (CroniterError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"invalid cron expression {text!r}: {_cron_reason(exc)}") from None
    return text


def _cron_reason(exc: BaseException) -> str:
    reason = str(exc).strip()
    reason = re.sub(r"^\[.*\]\s*", "", reason)
    return reason or type(exc).__name__


def _instants(wall: dt.datetime, zone: ZoneInfo, every_hour: bool) -> list[dt.datetime]:
    """The instants at which the wall-clock time ``wall`` fires, by the DST rule."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        # The time exists twice (clocks went back): fold 0 is the first pass.
        return [first, second] if every_hour else [first]
    # The time does not exist (clocks went forward).
    return [] if every_hour else [_gap_end(second, first, zone)]


def _gap_end(low: dt.datetime, high: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The instant the clocks jumped forward, between ``low`` and ``high`` (UTC)."""
    before = low.astimezone(zone).utcoffset()
    while high - low > dt.timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == before:
            low = mid
        else:
            high = mid
    return high.replace(microsecond=0)


# -- clocked ----------------------------------------------------------------------


@dataclass(frozen=True)
class Clocked(Schedule):
    """Once, at ``at`` (an aware datetime)."""

    at: dt.datetime
    kind: ClassVar[str] = "clocked"

    def __init__(self, at: dt.datetime) -> None:
        if not isinstance(at, dt.datetime):
            raise ValueError(f"a one-off time is a datetime, not {type(at).__name__}")
        object.__setattr__(self, "at", _aware(at, "a one-off time"))

    def next_after(
        self, after: dt.datetime, *, anchor: dt.datetime | None = None, tz: ZoneInfo | None = None
    ) -> dt.datetime | None:
        return self.at if self.at > _aware(after) else None

    def describe(self, tz: ZoneInfo | None = None) -> str:
        zone = tz or UTC
        local = self.at.astimezone(zone)
        name = getattr(zone, "key", "UTC")
        return f"once, at {local:%Y-%m-%d %H:%M:%S} ({name})"


#: Celery's spelling: ``crontab(minute=0, hour=7)``.
crontab = Crontab


def from_setting(value: Any) -> Schedule:
    """The schedule of a ``DJTASKS_BEAT_SCHEDULE`` entry's ``"schedule"`` value.

    Seconds (a number), a ``timedelta``, a :class:`Crontab`, a five-field cron
    string, an aware ``datetime`` (one-off) or a :class:`Schedule`.

    :raises ValueError: saying what is wrong.
    """
    if isinstance(value, Schedule):
        return value
    if isinstance(value, str):
        return Crontab.from_expression(value)
    if isinstance(value, dt.datetime):
        return Clocked(value)
    if isinstance(value, int | float | dt.timedelta) and not isinstance(value, bool):
        return Interval(value)
    raise ValueError(
        "schedule must be seconds, a timedelta, a crontab(...), a cron string "
        f"or an aware datetime, not {type(value).__name__}"
    )


# -- descriptions -----------------------------------------------------------------

_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_MONTHS = [
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_NTH = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


def describe_expression(expression: str) -> str:
    """English for a five-field cron expression: ``"0 9 * * 1-5"`` → "at 09:00 on Monday to Friday"."""
    fields = expression.split()
    (minutes, hours, doms, months, dows), nth = croniter.expand(expression)
    time = _describe_time(fields[0], minutes, hours)
    days = _describe_days(doms, dows, nth, fields)
    month = "" if months == ["*"] else " in " + _join([_MONTHS[m] for m in months])
    if not days and not month and (hours == ["*"] or minutes == ["*"]):
        return time
    return f"{time} {days or 'every day'}{month}"


def _describe_time(minute: str, minutes: list[Any], hours: list[Any]) -> str:
    step = re.fullmatch(r"\*/(\d+)", minute)
    if hours == ["*"]:
        if minutes == ["*"]:
            return "every minute"
        if step:
            return f"every {step.group(1)} minutes"
        if minutes == [0]:
            return "every hour, on the hour"
        return "every hour at " + _join([f":{m:02d}" for m in minutes])
    if minutes != ["*"] and not step and len(minutes) * len(hours) <= 6:
        return "at " + _join([f"{h:02d}:{m:02d}" for h in hours for m in minutes])
    if minutes == ["*"]:
        what = "every minute"
    elif step:
        what = f"every {step.group(1)} minutes"
    else:
        what = "at minute " + _join([str(m) for m in minutes])
    if hours == list(range(hours[0], hours[-1] + 1)):
        return f"{what} from {hours[0]:02d}:00 to {hours[-1]:02d}:59"
    return f"{what} during hours " + _join([f"{h:02d}" for h in hours])


def _describe_days(
    doms: list[Any], dows: list[Any], nth: dict[int, set[int]], fields: list[str]
) -> str:
    parts = []
    if doms != ["*"]:
        if doms == ["l"]:
            parts.append("on the last day of the month")
        elif "w" in fields[2].lower():
            parts.append(f"on the weekday nearest day {fields[2].rstrip('Ww')} of the month")
        else:
            word = "day" if len(doms) == 1 else "days"
            parts.append(f"on {word} " + _join([str(d) for d in doms]) + " of the month")
    if dows != ["*"]:
        if nth:
            parts.append(
                "on the "
                + _join(
                    [
                        f"{_NTH.get(n, str(n))} {_DAYS[d % 7]}"
                        for d, ns in sorted(nth.items())
                        for n in sorted(ns)
                    ]
                )
                + " of the month"
            )
        else:
            parts.append(_describe_weekdays(dows))
    return " or ".join(parts)


def _describe_weekdays(dows: list[Any]) -> str:
    days = sorted({int(d) % 7 for d in dows if str(d).isdigit()})
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        return f"on {_DAYS[days[0]]} to {_DAYS[days[-1]]}"
    return "on " + _join([_DAYS[d] for d in days])


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
