"""``manage.py taskctl`` answered by two live workers (the proof of issue 3's remote control).

``taskctl`` runs in the test process (``call_command``) against real
``taskworker`` subprocesses, except where the exit status of the real command
line is the point.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from djtasks import states
from djtasks.models import ControlCommand, PausedQueue, TaskRecord, TaskType
from tests.acceptance.helpers import state_counts, wait_for_states, wait_until_finished
from tests.support import wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

SLEEP = "tests.testapp.tasks.sleep"


def taskctl(*args: str) -> tuple[str, str]:
    """Run ``taskctl`` in this process; return its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command("taskctl", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def replies(*args: str) -> dict[str, Any]:
    """``taskctl ... --json`` (with a generous timeout) → {worker: reply}."""
    out, _ = taskctl(*args, "--timeout", "5", "--json")
    return json.loads(out)


def started(*workers: Any) -> None:
    """Wait for workers started with ``ready=False`` (their start-ups overlap)."""
    for w in workers:
        wait_until(
            lambda w=w: w.row() is not None or not w.alive(), 30, message=f"{w.name} to start"
        )
        assert w.alive(), w.log()


def run(*args: str) -> tuple[str, str, str]:
    """Like :func:`taskctl`, and the CommandError's message ("" if none)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("taskctl", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), str(exc)
    return out.getvalue(), err.getvalue(), ""


def state_of(status_output: str, name: str) -> str:
    """A worker's STATE column in ``taskctl status`` output."""
    line = next(line for line in status_output.splitlines() if line.startswith(name))
    return line.split()[1]


def oks(answer: dict[str, Any], *names: str) -> dict[str, Any]:
    """The ``ok`` values of ``answer``, checking exactly ``names`` replied without error."""
    assert sorted(answer) == sorted(names), answer
    assert all("ok" in r for r in answer.values()), answer
    return {w: r["ok"] for w, r in answer.items()}


def test_every_inspect_and_control_command_is_answered_by_two_workers(
    worker: Any, manage_py: Any
) -> None:
    # Each worker also has a queue of its own, so each can be given a task.
    w1 = worker(ready=False, concurrency=1, queues=("default", "only1"))
    w2 = worker(ready=False, concurrency=1, queues=("default", "only2"))
    started(w1, w2)
    names = (w1.name, w2.name)

    # ping, through the real command line: exit status 0, both named.
    cli = manage_py(["taskctl", "inspect", "ping", "--timeout", "5"], label="taskctl-ping")
    assert cli.wait(30) == 0, cli.log()
    assert f"-> {w1.name}: pong" in cli.log() and f"-> {w2.name}: pong" in cli.log()
    assert "2 workers replied." in cli.log()

    # stats and registered.
    stats = oks(replies("inspect", "stats"), *names)
    assert {s["hostname"] for s in stats.values()} == set(names)
    assert stats[w1.name]["concurrency"] == 1 and stats[w1.name]["pool"] == "prefork"
    assert stats[w1.name]["queues"] == ["default", "only1"]
    for registered in oks(replies("inspect", "registered"), *names).values():
        assert SLEEP in registered and "tests.testapp.tasks.add" in registered

    # active and reserved: a long task on each worker's own queue; w1 also
    # holds three more (one queued in its child, two claimed but not started).
    long1 = tasks.sleep.apply_async((30,), queue="only1").id
    long2 = tasks.sleep.apply_async((30,), queue="only2").id
    wait_until(lambda: Execution.objects.count() == 2, 15, message="both long tasks to start")
    with transaction.atomic():  # one claim takes all three
        more = [tasks.sleep.apply_async((30,), queue="only1").id for _ in range(3)]
    wait_until(
        lambda: not TaskRecord.objects.filter(pk__in=more, state=states.PENDING).exists(),
        10,
        message="w1 to claim the other three",
    )
    active = oks(replies("inspect", "active"), *names)
    reserved = oks(replies("inspect", "reserved"), *names)
    assert [t["id"] for t in active[w2.name]] == [long2]
    assert active[w2.name][0]["name"] == SLEEP
    assert reserved[w2.name] == []
    held = [t["id"] for t in active[w1.name] + reserved[w1.name]]
    assert sorted(held) == sorted([long1, *more])
    assert active[w1.name][0]["id"] == long1

    # A human-readable listing names each task.
    out, _ = taskctl("inspect", "active", "-d", w2.name, "--timeout", "5")
    assert f"-> {w2.name}: 1 task" in out and f"* {SLEEP}[{long2}]" in out

    # revoke --terminate: the running task is killed, the three waiting
    # behind it on w1 end REVOKED too (unstarted: revoked, or handed back by
    # the killed child), and the worker goes on.
    out, _ = taskctl("revoke", long1, *more, "--terminate", "--timeout", "5")
    assert f"{long1}: terminated on {w1.name}" in out, out
    wait_for_states([long1, *more], {states.REVOKED: 4}, timeout=10)
    row = TaskRecord.objects.get(pk=long1)
    assert row.exc_type == "djtasks.exceptions.TaskRevokedError"
    assert "terminated" in row.exc_message
    assert Execution.objects.filter(task_id__in=more).count() == 0  # none of them ran
    taskctl("revoke", long2, "--terminate", "--timeout", "5")
    wait_for_states([long2], {states.REVOKED: 1}, timeout=10)

    # scheduled and revoked: read from the database, per worker's queues.
    later = tasks.add.apply_async((1, 2), countdown=600).id
    mine = tasks.add.apply_async((1, 2), countdown=600, queue="only2").id
    scheduled = oks(replies("inspect", "scheduled"), *names)
    assert [t["id"] for t in scheduled[w1.name]] == [later]
    assert [t["id"] for t in scheduled[w2.name]] == [later, mine]
    out, _ = taskctl("revoke", later)
    assert f"{later}: revoked (it had not started)" in out
    revoked = oks(replies("inspect", "revoked"), *names)
    assert {t["id"] for t in revoked[w1.name]} == {later, long1, *more}
    assert {t["id"] for t in revoked[w2.name]} == {later, long2}
    assert revoked[w1.name][0]["id"] == later  # the most recent first

    # pool_grow / pool_shrink.
    grown = oks(replies("control", "pool_grow", "2"), *names)
    assert set(grown.values()) == {"pool grew by 2 to 3"}
    assert {s["concurrency"] for s in oks(replies("inspect", "stats"), *names).values()} == {3}
    shrunk = oks(replies("control", "pool_shrink", "1"), *names)
    assert set(shrunk.values()) == {"pool shrank by 1 to 2"}

    # add_consumer / cancel_consumer: a new queue is consumed at once.
    added = oks(replies("control", "add_consumer", "extra"), *names)
    assert set(added.values()) == {"now consuming from extra"}
    assert tasks.add.apply_async((2, 3), queue="extra").get(timeout=10) == 5
    cancelled = oks(replies("control", "cancel_consumer", "extra"), *names)
    assert set(cancelled.values()) == {"no longer consuming from extra"}
    assert oks(replies("inspect", "stats"), *names)[w1.name]["queues"] == ["default", "only1"]
    assert oks(replies("control", "cancel_consumer", "only1", "-d", w1.name), w1.name) == {
        w1.name: "no longer consuming from only1"
    }
    out, _, error = run("control", "cancel_consumer", "default", "-d", w1.name, "--timeout", "5")
    assert error == "1 worker(s) could not do it"
    assert "default is this worker's only queue" in out

    # rate_limit: stored for the whole cluster; `add` is not under the
    # limiter, and the command says so.
    out, err = taskctl("control", "rate_limit", "tests.testapp.tasks.add", "10/m", "--timeout", "5")
    assert TaskType.objects.get(pk="tests.testapp.tasks.add").rate_limit == "10/m"
    assert "declared without rate_limit or concurrency_limit" in err
    assert out.count("tests.testapp.tasks.add: not under the cluster-wide limiter") == 2, out

    # time_limit: every worker applies the new limits to the next runs.
    answer = oks(replies("control", "time_limit", SLEEP, "0.5", "3"), *names)
    assert set(answer.values()) == {f"{SLEEP}: soft 0.5 s, hard 3 s for the next runs"}
    t = TaskType.objects.get(pk=SLEEP)
    assert (t.soft_time_limit, t.time_limit) == (0.5, 3.0)
    slow = tasks.sleep.delay(5).id
    wait_until_finished([slow], timeout=10)
    assert TaskRecord.objects.get(pk=slow).exc_type.endswith("SoftTimeLimitExceeded")

    # status: both online.
    out, _ = taskctl("status")
    assert "2 online, 0 offline, 0 stopped." in out
    assert [state_of(out, n) for n in names] == ["online", "online"], out

    # shutdown: one worker, then the other; each replies, then exits cleanly.
    assert oks(replies("control", "shutdown", "-d", w1.name), w1.name)
    assert w1.wait(15) == 0
    assert oks(replies("control", "shutdown"), w2.name)
    assert w2.wait(15) == 0
    out, _, error = run("status")
    assert error == "no workers online"
    assert [state_of(out, n) for n in names] == ["stopped", "stopped"], out
    # Answered commands are deleted by their sender.
    assert not ControlCommand.objects.exists()


def test_pause_keeps_a_queue_waiting_on_two_workers_until_resume(worker: Any) -> None:
    w1, w2 = worker(ready=False, concurrency=1), worker(ready=False, concurrency=1)
    started(w1, w2)
    names = (w1.name, w2.name)
    answer = oks(replies("pause", "default"), *names)
    assert set(answer.values()) == {"stopped claiming from default"}
    assert PausedQueue.objects.filter(pk="default").exists()

    ids = [tasks.record.delay(i).id for i in range(6)]
    time.sleep(1.5)  # more than a poll and a control poll of both workers
    assert state_counts(ids) == {states.PENDING: 6}
    for stats in oks(replies("inspect", "stats"), *names).values():
        assert stats["paused"] == ["default"]
    out, _ = taskctl("status")
    assert "Queue default is paused" in out

    answer = oks(replies("resume", "default"), *names)
    assert set(answer.values()) == {"claiming from default again"}
    assert wait_until_finished(ids, timeout=15) == {states.SUCCESS: 6}
    assert not PausedQueue.objects.exists()


def test_pause_gives_back_claimed_tasks_and_running_ones_finish(worker: Any) -> None:
    w = worker(concurrency=1)
    # In one claim: the long task runs, one waits in the child behind it, two
    # are claimed but not started, two stay PENDING.
    with transaction.atomic():
        first = tasks.sleep.apply_async((1.5,), priority=10).id
        rest = [tasks.record.delay(i).id for i in range(5)]
    wait_until(
        lambda: state_counts(rest).get(states.RECEIVED) == 2,
        10,
        message="the worker to claim two tasks it cannot start yet",
    )
    out, _ = taskctl("pause", "default", "--timeout", "5")
    assert "Queue default paused." in out
    assert f"-> {w.name}: stopped claiming from default; returned 2 claimed task(s) to it" in out
    assert state_counts(rest) == {states.STARTED: 1, states.PENDING: 4}
    wait_until_finished([first], timeout=10)
    wait_until(
        lambda: state_counts(rest) == {states.SUCCESS: 1, states.PENDING: 4},
        5,
        message="the task queued in the child to run, the rest to wait",
    )
    time.sleep(1.0)
    assert state_counts(rest) == {states.SUCCESS: 1, states.PENDING: 4}
    taskctl("resume", "default", "--timeout", "5")
    assert wait_until_finished(rest, timeout=15) == {states.SUCCESS: 5}


def test_revoke_refuses_a_running_task_without_terminate(worker: Any) -> None:
    w = worker(concurrency=1)
    running = tasks.sleep.delay(30).id
    wait_until(
        lambda: Execution.objects.filter(task_id=running).exists(), 10, message="the task to start"
    )
    done = tasks.add.apply_async((1, 1), queue="nobody").id
    TaskRecord.objects.filter(pk=done).update(state=states.SUCCESS)
    err = io.StringIO()
    with pytest.raises(CommandError, match="2 of 2 task"):
        call_command("taskctl", "revoke", running, done, stdout=io.StringIO(), stderr=err)
    assert f"{running}: not revoked: already started on {w.name}; add --terminate" in err.getvalue()
    assert f"{done}: not revoked: already finished (SUCCESS)" in err.getvalue()
    assert TaskRecord.objects.get(pk=running).state == states.STARTED
    out, _ = taskctl("revoke", running, "--terminate", "--timeout", "5")
    assert f"{running}: terminated on {w.name}" in out


def test_the_threads_pool_cannot_terminate_and_solo_cannot_grow(worker: Any) -> None:
    threads = worker(ready=False, concurrency=1, pool="threads", queues=("default", "t"))
    solo = worker(ready=False, concurrency=1, pool="solo")
    started(threads, solo)
    out, _, error = run("control", "pool_grow", "1", "--timeout", "5")
    assert error == "1 worker(s) could not do it"
    assert f"-> {threads.name}: pool grew by 1 to 2" in out
    assert f"-> {solo.name}: ERROR: NotImplementedError: the solo pool cannot grow" in out

    running = tasks.sleep.apply_async((1,), queue="t").id
    wait_until(
        lambda: Execution.objects.filter(task_id=running).exists(), 10, message="the task to start"
    )
    _, err, error = run("revoke", running, "--terminate", "--timeout", "5")
    assert error == "1 of 1 task(s) could not be revoked"
    assert f"{threads.name}: ValueError: the threads pool cannot terminate a running task" in err
