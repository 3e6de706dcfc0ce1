"""schedules.py: intervals, crontabs, one-offs, their descriptions, and DST with a fixed clock."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from djtasks.schedules import (
    Clocked,
    Crontab,
    Interval,
    crontab,
    describe_expression,
    from_setting,
    get_zone,
    validate_expression,
)

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")


def at(zone: ZoneInfo, *args: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone, fold=fold)


def wall(times: list[dt.datetime], zone: ZoneInfo) -> list[str]:
    """Times as 'HH:MM TZ' in ``zone`` (the form a person would check)."""
    return [t.astimezone(zone).strftime("%m-%d %H:%M %Z") for t in times]


# -- intervals --------------------------------------------------------------------


def test_interval_counts_from_its_anchor_without_drift() -> None:
    anchor = dt.datetime(2026, 1, 1, 12, 0, 0, 437_512, tzinfo=UTC)
    every = Interval(1)
    assert every.next_after(anchor, anchor=anchor) == anchor + dt.timedelta(seconds=1)
    # A million seconds later, still on the anchor's microsecond.
    later = anchor + dt.timedelta(seconds=1_000_000, microseconds=3)
    assert every.next_after(later, anchor=anchor) == anchor + dt.timedelta(seconds=1_000_001)
    # Exactly on a run time: the next one, never the same.
    on_time = anchor + dt.timedelta(seconds=10)
    assert every.next_after(on_time, anchor=anchor) == on_time + dt.timedelta(seconds=1)


def test_interval_without_anchor_is_one_period_after() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert Interval(dt.timedelta(minutes=5)).next_after(now) == now + dt.timedelta(minutes=5)


def test_interval_is_elapsed_time_across_dst() -> None:
    # 24 hours after 12:00 on the day before the clocks go forward is 13:00.
    start = at(NY, 2024, 3, 9, 12)
    nxt = Interval(dt.timedelta(days=1)).next_after(start, anchor=start)
    assert wall([nxt], NY) == ["03-10 13:00 EDT"]


@pytest.mark.parametrize(
    ("every", "text", "as_pair"),
    [
        (1, "every second", (1, "seconds")),
        (90, "every 90 seconds", (90, "seconds")),
        (300, "every 5 minutes", (5, "minutes")),
        (dt.timedelta(hours=1), "every hour", (1, "hours")),
        (dt.timedelta(days=2), "every 2 days", (2, "days")),
    ],
)
def test_interval_description(every: object, text: str, as_pair: tuple[int, str]) -> None:
    schedule = Interval(every)  # type: ignore[arg-type]
    assert schedule.describe() == text
    assert schedule.as_every_period() == as_pair


@pytest.mark.parametrize("bad", [0, -5, 0.5, 1.5, dt.timedelta(milliseconds=10), "10", True, None])
def test_interval_refuses_what_is_not_whole_seconds(bad: object) -> None:
    with pytest.raises(ValueError, match="interval"):
        Interval(bad)  # type: ignore[arg-type]


# -- crontabs: parsing and descriptions --------------------------------------------------


def test_crontab_object_builds_the_expression_as_celery_does() -> None:
    assert Crontab(minute=0, hour=7, day_of_week="mon-fri").expression == "0 7 * * mon-fri"
    assert crontab(minute=[30, 0], hour="*/2").expression == "0,30 */2 * * *"
    assert crontab().expression == "* * * * *"
    cron = Crontab.from_expression("  15   10 1,15 * *  ")
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "15",
        "10",
        "1,15",
        "*",
        "*",
    )
    assert Crontab.from_expression("@daily").expression == "0 0 * * *"
    assert Crontab.from_expression("@hourly") == crontab(minute=0)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * *", "has 5 fields"),
        ("* * * * * *", "has 5 fields"),
        ("61 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("x * * * *", "invalid cron expression"),
        ("0 0 31 2 *", "never matches"),
        ("0 0 30 2 *", "never matches"),
        ("", "has 5 fields"),
    ],
)
def test_bad_expressions_are_refused_with_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_expression(expression)


def test_bad_crontab_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="minute"):
        crontab(minute="0 5")
    with pytest.raises(ValueError, match="hour"):
        crontab(hour=True)
    with pytest.raises(ValueError, match="out of range"):
        crontab(hour=25)


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("0 * * * *", "every hour, on the hour"),
        ("30 * * * *", "every hour at :30"),
        ("0 9 * * 1-5", "at 09:00 on Monday to Friday"),
        ("0 9,17 * * *", "at 09:00 and 17:00 every day"),
        ("0 0 1 * *", "at 00:00 on day 1 of the month"),
        ("0 0 1,15 * *", "at 00:00 on days 1 and 15 of the month"),
        ("0 0 L * *", "at 00:00 on the last day of the month"),
        ("0 9 * * mon#1", "at 09:00 on the first Monday of the month"),
        ("15 10 * 1,7 *", "at 10:15 every day in January and July"),
        ("*/10 9-17 * * 1-5", "every 10 minutes from 09:00 to 17:59 on Monday to Friday"),
        ("0 12 1 * mon", "at 12:00 on day 1 of the month or on Monday"),
    ],
)
def test_descriptions(expression: str, text: str) -> None:
    assert describe_expression(validate_expression(expression)) == text


def test_crontab_description_names_the_zone() -> None:
    assert crontab(minute=0, hour=7).describe(PARIS) == "at 07:00 every day (Europe/Paris)"


# -- crontabs: run times ------------------------------------------------------------------


def test_crontab_next_is_strictly_after() -> None:
    every_minute = crontab()
    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert every_minute.next_after(now, tz=UTC) == now + dt.timedelta(minutes=1)
    assert every_minute.next_after(now + dt.timedelta(seconds=59.9), tz=UTC) == (
        now + dt.timedelta(minutes=1)
    )


def test_crontab_reads_wall_clock_in_its_zone() -> None:
    seven = crontab(minute=0, hour=7)
    after = dt.datetime(2026, 7, 1, 12, tzinfo=UTC)
    assert seven.next_after(after, tz=PARIS) == dt.datetime(2026, 7, 2, 5, tzinfo=UTC)
    assert seven.next_after(after, tz=NY) == dt.datetime(2026, 7, 2, 11, tzinfo=UTC)


def test_crontab_zone_defaults_to_time_zone() -> None:
    with override_settings(TIME_ZONE="Europe/Paris"):
        assert get_zone("") == PARIS
        nxt = crontab(minute=0, hour=7).next_after(dt.datetime(2026, 7, 1, 12, tzinfo=UTC))
    assert nxt == dt.datetime(2026, 7, 2, 5, tzinfo=UTC)


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        get_zone("Mars/Olympus")


# DST. America/New_York: on 2024-03-10 02:00 EST becomes 03:00 EDT (02:xx does
# not exist); on 2024-11-03 02:00 EDT becomes 01:00 EST (01:xx happens twice).


def test_dst_back_fixed_time_in_the_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    times = crontab(minute=30, hour=1).upcoming(at(NY, 2024, 11, 2, 12), 3, tz=NY)
    assert wall(times, NY) == ["11-03 01:30 EDT", "11-04 01:30 EST", "11-05 01:30 EST"]


def test_dst_back_every_hour_schedule_runs_in_both_passes() -> None:
    times = crontab(minute="*/30").upcoming(at(NY, 2024, 11, 3, 0, 10), 6, tz=NY)
    assert wall(times, NY) == [
        "11-03 00:30 EDT",
        "11-03 01:00 EDT",
        "11-03 01:30 EDT",
        "11-03 01:00 EST",
        "11-03 01:30 EST",
        "11-03 02:00 EST",
    ]
    # Real time: every 30 minutes, no gap and no double.
    assert {b - a for a, b in itertools.pairwise(times)} == {dt.timedelta(minutes=30)}


def test_dst_back_from_inside_the_first_pass() -> None:
    # At 01:50 EDT the next hourly run is 01:00 EST (10 minutes later), not 02:00.
    hourly = crontab(minute=0)
    assert wall(hourly.upcoming(at(NY, 2024, 11, 3, 1, 50), 2, tz=NY), NY) == [
        "11-03 01:00 EST",
        "11-03 02:00 EST",
    ]
    # A fixed 01:30 job already ran at 01:30 EDT: next is tomorrow, not 01:30 EST.
    assert wall([crontab(minute=30, hour=1).next_after(at(NY, 2024, 11, 3, 1, 50), tz=NY)], NY) == [
        "11-04 01:30 EST"
    ]


def test_dst_back_from_inside_the_second_pass() -> None:
    after = at(NY, 2024, 11, 3, 1, 10, fold=1)  # 01:10 EST
    assert wall(crontab(minute="*/30").upcoming(after, 2, tz=NY), NY) == [
        "11-03 01:30 EST",
        "11-03 02:00 EST",
    ]
    assert wall([crontab(minute=30, hour=1).next_after(after, tz=NY)], NY) == ["11-04 01:30 EST"]


def test_dst_forward_fixed_time_in_the_skipped_hour_runs_at_the_end_of_the_gap() -> None:
    times = crontab(minute=30, hour=2).upcoming(at(NY, 2024, 3, 9, 12), 3, tz=NY)
    assert wall(times, NY) == ["03-10 03:00 EDT", "03-11 02:30 EDT", "03-12 02:30 EDT"]


def test_dst_forward_skipped_times_merge_into_one_run() -> None:
    # 02:00, 02:15, 02:30, 02:45 do not exist; they and 03:00 make one run at 03:00.
    times = crontab(minute="*/15", hour="2,3").upcoming(at(NY, 2024, 3, 10, 1), 5, tz=NY)
    assert wall(times, NY) == [
        "03-10 03:00 EDT",
        "03-10 03:15 EDT",
        "03-10 03:30 EDT",
        "03-10 03:45 EDT",
        "03-11 02:00 EDT",
    ]


def test_dst_forward_every_hour_schedule_keeps_real_time() -> None:
    times = crontab(minute=30).upcoming(at(NY, 2024, 3, 10, 0, 0), 4, tz=NY)
    assert wall(times, NY) == [
        "03-10 00:30 EST",
        "03-10 01:30 EST",
        "03-10 03:30 EDT",
        "03-10 04:30 EDT",
    ]
    assert {b - a for a, b in itertools.pairwise(times)} == {dt.timedelta(hours=1)}


def test_dst_every_minute_over_both_transitions_never_repeats_an_instant() -> None:
    every_minute = crontab()
    for start in (at(NY, 2024, 3, 10, 1, 0), at(NY, 2024, 11, 3, 0, 0)):
        times = every_minute.upcoming(start, 240, tz=NY)
        assert len(set(times)) == 240
        assert {b - a for a, b in itertools.pairwise(times)} == {dt.timedelta(minutes=1)}


def test_dst_half_hour_shift_lord_howe() -> None:
    # Australia/Lord_Howe moves by 30 minutes: 02:00 → 01:30 on 2024-04-07.
    zone = ZoneInfo("Australia/Lord_Howe")
    times = crontab(minute=45, hour=1).upcoming(at(zone, 2024, 4, 6, 12), 2, tz=zone)
    assert [t.astimezone(zone).strftime("%d %H:%M") for t in times] == ["07 01:45", "08 01:45"]
    assert times[1] - times[0] == dt.timedelta(hours=24, minutes=30)


# -- one-off ----------------------------------------------------------------------------


def test_clocked_runs_once() -> None:
    when = dt.datetime(2026, 3, 1, 9, tzinfo=PARIS)
    once = Clocked(when)
    assert once.next_after(when - dt.timedelta(seconds=1)) == when
    assert once.next_after(when) is None
    assert once.describe(PARIS) == "once, at 2026-03-01 09:00:00 (Europe/Paris)"
    with pytest.raises(ValueError, match="timezone-aware"):
        Clocked(dt.datetime(2026, 3, 1, 9))


# -- the settings' "schedule" value -----------------------------------------------------


def test_from_setting_accepts_celery_shapes() -> None:
    assert from_setting(10) == Interval(10)
    assert from_setting(10.0) == Interval(10)
    assert from_setting(dt.timedelta(minutes=1)) == Interval(60)
    assert from_setting("*/5 * * * *") == Crontab.from_expression("*/5 * * * *")
    assert from_setting(crontab(hour=7, minute=0)) == crontab(hour=7, minute=0)
    when = dt.datetime(2030, 1, 1, tzinfo=UTC)
    assert from_setting(when) == Clocked(when)
    with pytest.raises(ValueError, match="schedule must be"):
        from_setting([1, 2])
