"""Beat against a real database, in process, with a fixed (injected) clock.

Firing ticks once, catch-up, one-offs, start/end, DST through the whole
tick path, edits, the settings sync, validation, and leader election.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import override_settings

from djtasks import beat, signals
from djtasks.beat import Beat, Elector, LeaseElector, LostLeadership
from djtasks.models import PeriodicTask, ScheduleTick, TaskRecord
from djtasks.schedules import crontab
from tests.conftest import on_postgres
from tests.support import in_other_connection

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
T0 = dt.datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
ADD = "tests.testapp.tasks.add"


class Leading(Elector):
    """An elector that always leads (the tests drive tick() themselves)."""

    mode = "test"

    def __init__(self) -> None:
        super().__init__("test", 5.0)
        self.leader = True

    def acquire(self, now: dt.datetime) -> bool:
        return True

    def confirm(self, now: dt.datetime) -> bool:
        return True

    def release(self) -> None:
        pass


def make_beat(name: str = "beat-a") -> Beat:
    return Beat(name=name, elector=Leading(), clock=lambda: T0)


def entry(name: str = "e", **fields: Any) -> PeriodicTask:
    fields.setdefault("task", ADD)
    fields.setdefault("args", [1, 2])
    if "crontab" in fields:
        fields.setdefault("kind", PeriodicTask.CRONTAB)
    elif "clocked_at" in fields:
        fields.setdefault("kind", PeriodicTask.CLOCKED)
    else:
        fields.setdefault("every", 1)
        fields.setdefault("period", "seconds")
    return PeriodicTask.objects.create(name=name, **fields)


def sent(name: str | None = None) -> list[TaskRecord]:
    rows = TaskRecord.objects.order_by("created_at", "id")
    return [r for r in rows if name is None or r.headers.get("periodic_task") == name]


def dues(name: str | None = None) -> list[str]:
    return [r.headers["due"] for r in sent(name)]


def reload(row: PeriodicTask) -> PeriodicTask:
    return PeriodicTask.objects.get(pk=row.pk)


def s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


# -- firing ---------------------------------------------------------------------------


def test_interval_fires_each_tick_once() -> None:
    e = entry(every=10)
    b = make_beat()
    assert b.tick(T0) == T0 + s(10)  # first run one interval after it was set up
    assert sent() == []
    assert b.tick(T0 + s(10)) == T0 + s(20)
    assert b.tick(T0 + s(10.5)) == T0 + s(20)  # same tick again: nothing more
    b.tick(T0 + s(20.01))
    assert dues() == [(T0 + s(10)).isoformat(), (T0 + s(20)).isoformat()]
    task = sent()[0]
    assert (task.name, task.state, task.headers["periodic_task"]) == (ADD, "PENDING", "e")
    e = reload(e)
    assert (e.total_run_count, e.last_run_at, e.next_run_at) == (2, T0 + s(20.01), T0 + s(30))
    ticks = list(ScheduleTick.objects.order_by("due_at").values_list("due_at", "task_id", "beat"))
    assert [(d, str(t), b) for d, t, b in ticks] == [
        (T0 + s(10), str(sent()[0].id), "beat-a"),
        (T0 + s(20), str(sent()[1].id), "beat-a"),
    ]


def test_arguments_and_options_reach_the_task_row() -> None:
    entry(args=[2, 3], queue="hipri", priority=7, expires=30, every=5)
    b = make_beat()
    b.tick(T0)
    b.tick(T0 + s(5))
    task = sent()[0]
    assert (task.queue, task.priority) == ("hipri", 7)
    assert task.expires is not None and task.expires - task.created_at == s(30)
    from djtasks import serialization

    assert serialization.decode_arguments(task.content_type, task.payload) == ([2, 3], {})


def test_one_log_line_per_enqueued_tick(caplog: pytest.LogCaptureFixture) -> None:
    entry(every=1)
    b = make_beat()
    b.tick(T0)
    with caplog.at_level(logging.INFO, logger="djtasks.beat"):
        b.tick(T0 + s(1))
        b.tick(T0 + s(2))
    lines = [r.getMessage() for r in caplog.records if "beat: sent" in r.getMessage()]
    assert len(lines) == 2
    assert f"due {(T0 + s(1)).isoformat()}" in lines[0] and ADD in lines[0]


def test_two_beats_that_both_believe_they_lead_send_a_tick_once() -> None:
    e = entry(every=1)
    a, b = make_beat("a"), make_beat("b")
    a.tick(T0)
    stale = reload(e)  # b read the due row before a fired it
    a.apply_entry(reload(e), T0 + s(1))
    b.apply_entry(stale, T0 + s(1))
    assert dues() == [(T0 + s(1)).isoformat()]
    # Even if the entry were wound back to that due time, the unique key holds.
    PeriodicTask.objects.filter(pk=e.pk).update(next_run_at=T0 + s(1))
    b.apply_entry(reload(e), T0 + s(1.2))
    assert dues() == [(T0 + s(1)).isoformat()]
    with pytest.raises(IntegrityError), transaction.atomic():
        ScheduleTick.objects.create(
            periodic_task=e, due_at=T0 + s(1), task_id=sent()[0].id, enqueued_at=T0
        )


def test_a_failing_send_rolls_back_both_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    e = entry(every=1)
    b = make_beat()
    b.tick(T0)

    def boom(*args: Any, **kwargs: Any) -> None:
        raise ValueError("cannot encode")

    monkeypatch.setattr(beat.service, "send", boom)
    b.tick(T0 + s(1))
    assert sent() == [] and ScheduleTick.objects.count() == 0
    e = reload(e)
    assert (e.next_run_at, e.total_run_count) == (T0 + s(2), 0)  # moved on, no retry storm


def test_unregistered_task_is_not_sent_and_the_entry_moves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    e = entry(task="no.such.task", args=[])
    b = make_beat()
    b.tick(T0)
    with caplog.at_level(logging.ERROR, logger="djtasks.beat"):
        b.tick(T0 + s(1))
    assert sent() == []
    assert "'no.such.task' is not registered" in caplog.text
    assert reload(e).next_run_at == T0 + s(2)


# -- missed runs -----------------------------------------------------------------------


@pytest.mark.parametrize(("catch_up", "runs"), [("once", 1), ("skip", 0)])
def test_missed_interval_runs_catch_up_once_or_skip(catch_up: str, runs: int) -> None:
    e = entry(every=10, catch_up=catch_up)
    b = make_beat()
    b.tick(T0)
    # Beat was down for ten minutes: sixty runs missed.
    b.tick(T0 + dt.timedelta(minutes=10, seconds=3))
    assert len(sent()) == runs
    assert reload(e).next_run_at == T0 + dt.timedelta(minutes=10, seconds=10)
    b.tick(T0 + dt.timedelta(minutes=10, seconds=10))
    assert len(sent()) == runs + 1  # back on schedule


@pytest.mark.parametrize(("catch_up", "runs"), [("once", 1), ("skip", 0)])
def test_a_daily_run_reached_past_the_grace_is_missed(catch_up: str, runs: int) -> None:
    entry(crontab="0 12 * * *", timezone="UTC", catch_up=catch_up)
    b = make_beat()
    b.tick(T0 - s(60))
    b.tick(T0 + dt.timedelta(minutes=10))  # ten minutes late, one run due
    assert len(sent()) == runs


def test_a_run_reached_within_the_grace_is_on_time() -> None:
    entry(crontab="0 12 * * *", timezone="UTC", catch_up="skip")
    b = make_beat()
    b.tick(T0 - s(60))
    b.tick(T0 + s(30))  # 30 s late, under DJTASKS_BEAT_GRACE (60 s)
    assert dues() == [T0.isoformat()]


def test_wall_clock_jumps_never_duplicate() -> None:
    entry(every=1)
    b = make_beat()
    b.tick(T0)
    for t in (1, 2, 3):
        b.tick(T0 + s(t))
    b.tick(T0 - dt.timedelta(hours=1))  # clock stepped back: nothing is due
    b.tick(T0 + s(3.5))
    b.tick(T0 + dt.timedelta(hours=1))  # stepped forward: one catch-up run
    b.tick(T0 + dt.timedelta(hours=1, seconds=1))
    assert len(dues()) == len(set(dues())) == 5


# -- one-offs, start and end --------------------------------------------------------------


def test_one_off_runs_once_and_is_disabled() -> None:
    e = entry(clocked_at=T0 + s(30))
    b = make_beat()
    assert b.tick(T0) == T0 + s(30)
    b.tick(T0 + s(30))
    b.tick(T0 + s(60))
    assert dues() == [(T0 + s(30)).isoformat()]
    e = reload(e)
    assert (e.enabled, e.next_run_at, e.total_run_count) == (False, None, 1)


@pytest.mark.parametrize(("catch_up", "runs"), [("once", 1), ("skip", 0)])
def test_one_off_in_the_past_follows_catch_up(catch_up: str, runs: int) -> None:
    e = entry(clocked_at=T0 - dt.timedelta(hours=1), catch_up=catch_up)
    make_beat().tick(T0)
    assert len(sent()) == runs
    assert reload(e).enabled is False


def test_start_and_end_times() -> None:
    e = entry(every=10, start_at=T0 + s(100), end_at=T0 + s(125))
    b = make_beat()
    assert b.tick(T0) == T0 + s(100)
    for t in (100, 110, 120, 130):
        b.tick(T0 + s(t))
    assert dues() == [(T0 + s(t)).isoformat() for t in (100, 110, 120)]
    assert reload(e).enabled is False


# -- DST through the whole tick path ----------------------------------------------------------


def _night(start: dt.datetime, hours: int) -> list[dt.datetime]:
    return [start + dt.timedelta(minutes=m) for m in range(0, hours * 60 + 1, 5)]


def test_dst_fall_back_through_beat() -> None:
    entry("daily-0130", crontab="30 1 * * *", timezone="America/New_York")
    entry("half-hourly", crontab="*/30 * * * *", timezone="America/New_York")
    b = make_beat()
    night = _night(dt.datetime(2024, 11, 3, 3, 0, tzinfo=UTC), 6)  # 23:00 EDT → 01:00 EST+
    for now in night:
        b.tick(now)
    daily = [dt.datetime.fromisoformat(d).astimezone(NY) for d in dues("daily-0130")]
    assert [d.strftime("%H:%M %Z") for d in daily] == ["01:30 EDT"]
    half = [dt.datetime.fromisoformat(d) for d in dues("half-hourly")]
    assert len(half) == len(set(half))
    assert {b - a for a, b in itertools.pairwise(half)} == {dt.timedelta(minutes=30)}
    assert "01:30 EST" in {h.astimezone(NY).strftime("%H:%M %Z") for h in half}


def test_dst_spring_forward_through_beat() -> None:
    entry("daily-0230", crontab="30 2 * * *", timezone="America/New_York")
    entry("hourly-30", crontab="30 * * * *", timezone="America/New_York")
    b = make_beat()
    for now in _night(dt.datetime(2024, 3, 10, 5, 0, tzinfo=UTC), 4):  # 00:00 EST → 01:00 EDT+
        b.tick(now)
    daily = [dt.datetime.fromisoformat(d).astimezone(NY) for d in dues("daily-0230")]
    assert [d.strftime("%m-%d %H:%M %Z") for d in daily] == ["03-10 03:00 EDT"]
    hourly = [
        dt.datetime.fromisoformat(d).astimezone(NY).strftime("%H:%M") for d in dues("hourly-30")
    ]
    assert hourly == ["00:30", "01:30", "03:30", "04:30", "05:30"][: len(hourly)]
    assert len(hourly) >= 3


# -- edits ------------------------------------------------------------------------------------


def test_schedule_edit_resets_next_run_and_other_edits_do_not() -> None:
    e = entry(every=10)
    b = make_beat()
    b.tick(T0)
    e = reload(e)
    e.args = [5, 5]
    e.save()
    assert reload(e).next_run_at == T0 + s(10)  # arguments only: same timing
    e.every = 60
    e.save()
    assert reload(e).next_run_at is None  # recomputed by beat from now
    assert b.tick(T0 + s(5)) == T0 + s(65)


def test_re_enabling_does_not_catch_up_the_disabled_time() -> None:
    e = entry(every=10)
    b = make_beat()
    b.tick(T0)
    e = reload(e)
    e.enabled = False
    e.save()
    e.enabled = True
    e.save()
    b.tick(T0 + dt.timedelta(hours=5))
    assert sent() == []
    assert reload(e).next_run_at == T0 + dt.timedelta(hours=5, seconds=10)


def test_save_keeps_a_next_run_set_on_purpose() -> None:
    e = entry(every=10)
    e = reload(e)
    e.every, e.next_run_at = 20, T0 + s(3)
    e.save()
    assert reload(e).next_run_at == T0 + s(3)


# -- the settings sync --------------------------------------------------------------------------


SCHEDULE = {
    "add-every-10": {"task": ADD, "schedule": 10, "args": (1, 2)},
    "add-nightly": {
        "task": ADD,
        "schedule": crontab(minute=0, hour=3),
        "kwargs": {"x": 1, "y": 2},
        "options": {"queue": "nightly", "priority": 5, "expires": dt.timedelta(hours=1)},
        "timezone": "Europe/Paris",
        "catch_up": "skip",
        "description": "nightly sums",
    },
}


def test_sync_creates_rows_marked_as_from_settings() -> None:
    with override_settings(DJTASKS_BEAT_SCHEDULE=SCHEDULE):
        beat.sync_settings()
    every, nightly = PeriodicTask.objects.order_by("name")
    assert (every.source, every.kind, every.every, every.period, every.args) == (
        "settings",
        "interval",
        10,
        "seconds",
        [1, 2],
    )
    assert (nightly.crontab, nightly.timezone, nightly.queue, nightly.priority) == (
        "0 3 * * *",
        "Europe/Paris",
        "nightly",
        5,
    )
    assert (nightly.expires, nightly.catch_up, nightly.kwargs) == (3600.0, "skip", {"x": 1, "y": 2})
    assert nightly.describe_schedule() == "at 03:00 every day (Europe/Paris)"
    assert not beat.edited_since_sync(nightly)


def test_sync_follows_settings_but_keeps_admin_edits(caplog: pytest.LogCaptureFixture) -> None:
    with override_settings(DJTASKS_BEAT_SCHEDULE=SCHEDULE):
        beat.sync_settings()
    # An admin edits one entry.
    nightly = PeriodicTask.objects.get(name="add-nightly")
    nightly.crontab = "0 4 * * *"
    nightly.save()
    assert beat.edited_since_sync(nightly)
    changed = {
        "add-every-10": {**SCHEDULE["add-every-10"], "schedule": 20},
        "add-nightly": {**SCHEDULE["add-nightly"], "schedule": "0 5 * * *"},
    }
    with override_settings(DJTASKS_BEAT_SCHEDULE=changed), caplog.at_level(logging.WARNING):
        beat.sync_settings()
    assert PeriodicTask.objects.get(name="add-every-10").every == 20  # followed settings
    assert PeriodicTask.objects.get(name="add-nightly").crontab == "0 4 * * *"  # admin kept
    assert "edited in the admin; keeping the admin's version" in caplog.text
    # The admin action puts it back under settings.
    beat.apply_definition(
        PeriodicTask.objects.get(name="add-nightly"),
        beat.entry_fields("add-nightly", changed["add-nightly"]),
    )
    nightly = PeriodicTask.objects.get(name="add-nightly")
    assert nightly.crontab == "0 5 * * *" and not beat.edited_since_sync(nightly)


def test_sync_never_touches_admin_rows_and_removes_dropped_entries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mine = entry("add-every-10", every=99)  # made in the admin, same name
    with override_settings(DJTASKS_BEAT_SCHEDULE=SCHEDULE), caplog.at_level(logging.WARNING):
        beat.sync_settings()
    assert reload(mine).every == 99 and reload(mine).source == "admin"
    assert "a schedule of that name was made in the admin" in caplog.text
    with override_settings(DJTASKS_BEAT_SCHEDULE={}):
        beat.sync_settings()
    assert list(PeriodicTask.objects.values_list("name", flat=True)) == ["add-every-10"]
    # A dropped entry that was edited in the admin stays, as an admin row.
    with override_settings(DJTASKS_BEAT_SCHEDULE={"x": SCHEDULE["add-nightly"]}):
        beat.sync_settings()
    x = PeriodicTask.objects.get(name="x")
    x.description = "mine now"
    x.save()
    with override_settings(DJTASKS_BEAT_SCHEDULE={}):
        beat.sync_settings()
    assert PeriodicTask.objects.get(name="x").source == "admin"


# -- validation -------------------------------------------------------------------------------


def invalid(**fields: Any) -> dict[str, list[str]]:
    base: dict[str, Any] = {
        "name": "v",
        "task": ADD,
        "args": [1, 2],
        "every": 1,
        "period": "seconds",
    }
    row = PeriodicTask(**{**base, **fields})
    with pytest.raises(ValidationError) as info:
        row.full_clean()
    return info.value.message_dict


def test_model_validation_refuses_what_beat_cannot_run() -> None:
    assert "never matches a date" in invalid(kind="crontab", crontab="0 0 31 2 *")["crontab"][0]
    assert "out of range" in invalid(kind="crontab", crontab="61 * * * *")["crontab"][0]
    assert "5 fields" in invalid(kind="crontab", crontab="* * *")["crontab"][0]
    assert "whole number" in invalid(every=0)["every"][0]
    assert "period" in invalid(period="")["period"][0]
    assert "not registered" in invalid(task="nope.nope")["task"][0]
    assert "JSON list" in invalid(args={"a": 1})["args"][0]
    assert "JSON object" in invalid(kwargs=[1])["kwargs"][0]
    assert "bad arguments" in invalid(args=[1, 2, 3])["args"][0]
    assert "unknown time zone" in invalid(timezone="Nowhere/City")["timezone"][0]
    assert "after the start" in invalid(start_at=T0, end_at=T0)["end_at"][0]
    assert "one-off needs" in invalid(kind="clocked")["clocked_at"][0]
    assert "-100 to 100" in invalid(priority=500)["priority"][0]
    PeriodicTask(name="ok", task=ADD, args=[1, 2], kind="crontab", crontab="@daily").full_clean()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "must be a dict"),
        ({"task": ADD}, "'schedule' is missing"),
        ({"task": ADD, "schedule": "61 * * * *"}, "out of range"),
        ({"task": ADD, "schedule": 0.5}, "whole number of seconds"),
        ({"task": ADD, "schedule": 5, "relative": True}, "unknown key(s) 'relative'"),
        ({"task": ADD, "schedule": 5, "options": {"exchange": "x"}}, "'options'"),
        ({"task": ADD, "schedule": 5, "args": [1, 2, 3]}, "bad arguments"),
        ({"task": ADD, "schedule": 5, "timezone": "Moon/Base"}, "unknown time zone"),
        ({"task": ADD, "schedule": 5, "catch_up": "all"}, "catch_up"),
    ],
)
def test_settings_entries_are_checked(spec: Any, message: str) -> None:
    with pytest.raises(ValueError, match="DJTASKS_BEAT_SCHEDULE\\['x'\\]") as info:
        beat.entry_fields("x", spec)
    assert message in str(info.value)


def test_manage_py_check_reports_bad_entries_and_unknown_tasks() -> None:
    from djtasks.checks import check_beat_settings

    bad = {
        "ok": {"task": ADD, "schedule": 5, "args": [1, 1]},
        "typo": {"task": "tests.testapp.tasks.addd", "schedule": 5},
        "broken": {"task": ADD, "schedule": "* * *"},
    }
    with override_settings(DJTASKS_BEAT_SCHEDULE=bad):
        found = check_beat_settings()
    assert [(m.id, "typo" in m.msg or "broken" in m.msg) for m in found] == [
        ("djtasks.W101", True),
        ("djtasks.E101", True),
    ]
    with override_settings(
        DJTASKS_BEAT_SCHEDULE=[], DJTASKS_BEAT_LEASE=0, DJTASKS_BEAT_ELECTION="raft"
    ):
        assert sorted(m.id for m in check_beat_settings()) == [
            "djtasks.E101",
            "djtasks.E102",
            "djtasks.E103",
        ]
    assert check_beat_settings() == []


# -- leadership ---------------------------------------------------------------------------------


def test_lease_election() -> None:
    a, b = LeaseElector("a", 5.0), LeaseElector("b", 5.0)
    assert a.acquire(T0) and not b.acquire(T0 + s(1))
    assert a.confirm(T0 + s(2))
    # a stops renewing; once the lease ran out b takes over.
    assert not b.acquire(T0 + s(4.9))
    assert b.acquire(T0 + s(5.1))
    # a wakes up: it cannot confirm, and its fence refuses any tick.
    with pytest.raises(LostLeadership):
        a.fence(T0 + s(5.2))
    assert not a.confirm(T0 + s(5.2)) and not a.leader
    # A clean stop hands over at once.
    b.release()
    assert a.acquire(T0 + s(5.3))


def test_lease_fence_rolls_back_a_tick_after_losing_leadership() -> None:
    e = entry(every=1)
    a, b = LeaseElector("a", 5.0), LeaseElector("b", 5.0)
    assert a.acquire(T0)
    beat_a = Beat(name="a", elector=a, clock=lambda: T0)
    beat_a.tick(T0)
    assert b.acquire(T0 + s(6))  # a was stopped past its lease
    beat_a.tick(T0 + s(6.5))  # a resumes and still believes it leads
    assert sent() == [] and reload(e).next_run_at == T0 + s(1)
    Beat(name="b", elector=b, clock=lambda: T0).tick(T0 + s(6.6))
    assert len(sent()) == 1  # catch_up=once, sent by b


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_advisory_lock_election() -> None:
    a, b = beat.AdvisoryLockElector("a", 5.0), beat.AdvisoryLockElector("b", 5.0)
    try:
        assert a.acquire(T0)
        assert not b.acquire(T0)
        assert a.confirm(T0)
        a.release()  # closing the session frees the lock at once
        assert b.acquire(T0)
    finally:
        a.release()
        b.release()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_terminated_lock_session_ends_leadership() -> None:
    from multiprocessing.connection import wait

    from django.db import connection

    leader = beat.AdvisoryLockElector("a", 5.0)
    try:
        assert leader.acquire(T0)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [leader.conn.info.backend_pid])
        assert wait(leader.waitables(), timeout=5) != []
        leader.drain()
        assert not leader.leader and leader.waitables() == []
        assert leader.acquire(T0)  # reconnects and leads again
    finally:
        leader.release()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_saving_an_entry_wakes_the_leader() -> None:
    leader = beat.AdvisoryLockElector("a", 5.0)
    try:
        assert leader.acquire(T0)
        leader.drain()  # what the acquisition itself caused
        from multiprocessing.connection import wait

        assert wait(leader.waitables(), timeout=0.05) == []
        in_other_connection(lambda: entry(every=5))
        assert wait(leader.waitables(), timeout=5) != []
        leader.drain()
        assert leader.leader
    finally:
        leader.release()


def test_beat_init_is_sent_and_leadership_released(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def on_init(sender: Beat, **kwargs: Any) -> None:
        seen.append(sender)
        sender.stopping = True

    signals.beat_init.connect(on_init)
    released = Counter[str]()
    elector = Leading()
    monkeypatch.setattr(elector, "release", lambda: released.update(["release"]))
    try:
        b = Beat(name="x", elector=elector)
        b.run()
    finally:
        signals.beat_init.disconnect(on_init)
    assert seen == [b] and released["release"] == 1


def test_on_postgres_helper_matches_the_database() -> None:
    from django.db import connection

    assert on_postgres() == (connection.vendor == "postgresql")
