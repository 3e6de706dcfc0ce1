"""Scenario 8: three ``taskbeat`` processes, a per-second schedule, a frozen and a killed leader.

``tests/acceptance/test_beat_processes.py`` runs two beats through a kill -9
and a SIGTERM hand-over. Here three beats run through both faults in one
go, with each election:

- ``lease`` (both databases): the leader is frozen (SIGSTOP) past its lease;
  a follower takes over; the thawed beat must not send a duplicate. Then
  the new leader is SIGKILLed; another takes over within the lease plus a
  retry.
- ``advisory lock`` (PostgreSQL): the frozen leader keeps its lock session
  (the kernel still answers for it), so nobody takes over: the ticks of the
  frozen seconds are missed and one catch-up run follows the thaw. Then
  SIGKILL: the lock dies with the session and a follower leads within about
  a second.

And, in process with an injected clock, the wall clock stepped forwards and
backwards under three lease-elected beats: never a duplicate, one catch-up
run for a forward step (``catch_up="once"``, none with ``"skip"``), and
nothing until the stored due time after a backward step.

Run longer with ``DJTASKS_CHAOS_BEAT_SECONDS=180``.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from djtasks.beat import Beat, LeaseElector
from djtasks.models import BeatLease, PeriodicTask, ScheduleTick, TaskRecord
from tests.chaos.conftest import BEAT_SECONDS, report
from tests.conftest import on_postgres
from tests.support import ManagedProcess, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ADD = "tests.testapp.tasks.add"
SECOND = dt.timedelta(seconds=1)
LEASE = 1.5  # DJTASKS_BEAT_LEASE of the beat processes


def leader() -> str:
    row = BeatLease.objects.filter(pk="beat").first()
    return row.holder if row is not None else ""


def ticks() -> list[tuple[dt.datetime, dt.datetime, str]]:
    """(due, enqueued, beat) of every run of the per-second entry, by due time."""
    return list(
        ScheduleTick.objects.filter(periodic_task__name="every-second")
        .order_by("due_at")
        .values_list("due_at", "enqueued_at", "beat")
    )


def duplicates() -> int:
    """Task rows beyond one per (entry, due time): the promise is zero."""
    counts = Counter(
        (h["periodic_task"], h["due"])
        for h in TaskRecord.objects.values_list("headers", flat=True)
        if "periodic_task" in h
    )
    return sum(n - 1 for n in counts.values())


def first_tick_by_other_after(moment: dt.datetime, other_than: str) -> dt.datetime:
    def found() -> Any:
        return next((e for _, e, b in ticks() if e > moment and b != other_than), None)

    return wait_until(found, 30, message=f"a beat other than {other_than} to send a tick")


elections = [
    pytest.param("lease", id="lease"),
    pytest.param("auto", id="advisory-lock", marks=pytest.mark.postgres),
]


@pytest.mark.parametrize("election", elections)
def test_three_beats_through_a_frozen_and_a_killed_leader(
    manage_py: Callable[..., ManagedProcess], election: str
) -> None:
    PeriodicTask.objects.create(
        name="every-second", task=ADD, args=[1, 2], every=1, period="seconds"
    )
    env = {"DJTASKS_TEST_BEAT_ELECTION": election, "DJTASKS_TEST_BEAT_LEASE": str(LEASE)}
    beats = {}
    for name in ("beat-a", "beat-b", "beat-c"):
        beats[name] = manage_py(
            ["taskbeat", "--hostname", name, "--loglevel", "INFO"], label=name, env=env
        )
    for proc in beats.values():
        proc.wait_for_output("beat: Starting", timeout=30)
    wait_until(lambda: len(ticks()) >= 2, 30, message="the first ticks")
    phase = max(2.0, (BEAT_SECONDS - 8) / 3)  # three phases, a freeze and a takeover
    time.sleep(phase)

    # Freeze the leader past its lease, then thaw it.
    frozen = leader()
    assert frozen in beats
    os.killpg(beats[frozen].pid, signal.SIGSTOP)
    stopped_at = timezone.now()
    try:
        time.sleep(2 * LEASE + 1.5)
    finally:
        os.killpg(beats[frozen].pid, signal.SIGCONT)
    thawed_at = timezone.now()
    if election == "lease":
        taken = first_tick_by_other_after(stopped_at, frozen)
        freeze_gap = (taken - stopped_at).total_seconds()
    else:
        # The lock session outlived the freeze: the same beat leads on.
        wait_until(lambda: any(e > thawed_at for _, e, _ in ticks()), 10, message="a tick")
        half = SECOND / 2  # the test reads its clock a moment after each signal
        assert not any(stopped_at + half < e < thawed_at - half for _, e, _ in ticks())
        freeze_gap = (thawed_at - stopped_at).total_seconds()
    time.sleep(phase)

    # Kill the leader outright.
    victim = wait_until(leader, 10)
    beats[victim].send_signal(signal.SIGKILL)
    killed_at = timezone.now()
    beats[victim].wait(10)
    took_over = first_tick_by_other_after(killed_at, victim)
    takeover = (took_over - killed_at).total_seconds()
    time.sleep(phase)
    for name, proc in beats.items():
        if name != victim:
            proc.terminate()
            assert proc.wait(15) == 0
    runs = ticks()

    assert duplicates() == 0
    assert ScheduleTick.objects.count() == TaskRecord.objects.count() == len(runs)
    dues = [d for d, _, _ in runs]
    expected = [dues[0] + k * SECOND for k in range(int((dues[-1] - dues[0]) / SECOND) + 1)]
    assert set(dues) <= set(expected)
    missed = sorted(set(expected) - set(dues))
    # Missed slots only while a leader was frozen or dead; each gap ends with
    # one catch-up run (catch_up="once"), never a burst.
    windows = [
        (stopped_at - SECOND, stopped_at + dt.timedelta(seconds=freeze_gap) + SECOND),
        (killed_at - SECOND, took_over + SECOND),
    ]
    assert all(any(a <= m <= b for a, b in windows) for m in missed), (missed, windows)
    late = [(d, e) for d, e, _ in runs if e - d > 1.5 * SECOND]
    assert len(late) <= 2, late
    # Takeover: the lease (plus a follower's next try) or, with the lock, at once.
    assert takeover < (LEASE + 2.5 if election == "lease" else 2.5)
    if election == "lease":
        assert freeze_gap < LEASE + 2.5
        assert frozen in beats[frozen].log() and "no longer leads" in beats[frozen].log()
    report(
        f"3 beats ({'postgresql' if on_postgres() else 'sqlite'}, "
        f"{'lease' if election == 'lease' else 'advisory lock'} election): "
        f"{len(dues)} ticks over {len(expected)} s, duplicates 0, missed {len(missed)} "
        f"(frozen leader: {'taken over after' if election == 'lease' else 'no takeover,'} "
        f"{freeze_gap:.1f}s; kill -9: taken over after {takeover:.1f}s)"
    )


class SteppedClock:
    """One wall clock for three beats (one host, or hosts stepped together)."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


def test_wall_clock_steps_under_three_beats_never_duplicate() -> None:
    t0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    clock = SteppedClock(t0)
    PeriodicTask.objects.create(
        name="once", task=ADD, args=[1, 1], every=1, period="seconds", catch_up="once"
    )
    PeriodicTask.objects.create(
        name="skip", task=ADD, args=[2, 2], every=1, period="seconds", catch_up="skip"
    )
    beats = [Beat(name=n, clock=clock, elector=LeaseElector(n, 5.0)) for n in "abc"]
    sent_at: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {"once": [], "skip": []}

    def run(seconds: float) -> None:
        end = clock.now + dt.timedelta(seconds=seconds)
        while clock.now < end:
            for b in beats:
                b.step()
            clock.now += dt.timedelta(seconds=0.5)

    def record() -> None:
        for name in sent_at:
            sent_at[name] = list(
                ScheduleTick.objects.filter(periodic_task__name=name)
                .order_by("due_at")
                .values_list("due_at", "enqueued_at")
            )

    run(10)
    record()
    before_forward = {k: len(v) for k, v in sent_at.items()}
    assert 9 <= before_forward["once"] <= 10

    clock.now += dt.timedelta(seconds=120)  # stepped forward two minutes
    jumped_at = clock.now
    run(5)
    record()
    catch_up = [d for d, e in sent_at["once"] if e >= jumped_at and e - d > 60 * SECOND]
    assert len(catch_up) == 1  # one run for the two missed minutes
    assert not [d for d, e in sent_at["skip"] if e - d > 60 * SECOND]  # skip: none

    last_due = max(d for d, _ in sent_at["once"])
    count = {k: len(v) for k, v in sent_at.items()}
    clock.now -= dt.timedelta(seconds=60)  # stepped back a minute
    run(55)
    record()
    assert {k: len(v) for k, v in sent_at.items()} == count  # nothing is due again
    run(15)  # past the stored due time: ticks resume, after the last one sent
    record()
    resumed = [d for d, _ in sent_at["once"][count["once"] :]]
    assert resumed and min(resumed) > last_due

    for name in sent_at:
        dues = [d for d, _ in sent_at[name]]
        assert len(dues) == len(set(dues))
    assert duplicates() == 0
    assert {b.name for b in beats if b.elector.leader} and sum(b.sent for b in beats) == sum(
        len(v) for v in sent_at.values()
    )
    report(
        f"clock steps (+120 s, -60 s) under 3 beats: once={len(sent_at['once'])} "
        f"skip={len(sent_at['skip'])} ticks, duplicates 0, forward step: 1 catch-up "
        f"(once) / 0 (skip); backward step: silent until the stored due time"
    )
