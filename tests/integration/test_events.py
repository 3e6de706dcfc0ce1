"""djtasks.events: state changes read from the rows, poll by poll.

The rows are written through djtasks.queue as a worker would; the stream
itself, with a real worker and ``taskctl events``, is in
tests/acceptance/test_api_workers.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from djtasks import queue, serialization, states
from djtasks.events import WORKER_OFFLINE, WORKER_ONLINE, Event, EventSource, Filter
from djtasks.models import TaskRecord
from djtasks.models import Worker as WorkerRow
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

W = "w1@test"


def trail(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.state, e.id) for e in events if e.kind == "task"]


def claim_one(task_id: str, now: dt.datetime) -> queue.Claimed:
    got = queue.claim(W, ["default"], 100, now, 60)
    queue.release(W, [c for c in got if c.id != task_id])
    (claimed,) = [c for c in got if c.id == task_id]
    return claimed


def outcome(c: queue.Claimed, state: str, now: dt.datetime, **kw: Any) -> queue.Outcome:
    return queue.Outcome(c.id, c.attempt, state, now, runtime=0.5, task_name=c.name, **kw)


def test_a_task_step_by_step() -> None:
    source = EventSource()
    assert source.poll() == []
    task_id = str(tasks.add.delay(1, 2).id)
    (pending,) = source.poll()
    assert (pending.state, pending.id, pending.name, pending.queue) == (
        states.PENDING,
        task_id,
        "tests.testapp.tasks.add",
        "default",
    )
    assert source.poll() == []  # nothing new: nothing printed twice
    claimed = claim_one(task_id, timezone.now())
    assert trail(source.poll()) == [(states.RECEIVED, task_id)]
    queue.settle([], W, [claimed], timezone.now())
    (started,) = source.poll()
    assert started.state == states.STARTED and started.worker == W
    queue.set_progress(task_id, "PROGRESS", *serialization.encode({"current": 1}, "json"))
    assert trail(source.poll()) == [("PROGRESS", task_id)]
    assert source.poll() == []
    ct, text = serialization.encode(3, "json")
    queue.settle(
        [outcome(claimed, states.SUCCESS, timezone.now(), result=text, result_content_type=ct)],
        W,
        [],
        timezone.now(),
    )
    (done,) = source.poll()
    assert done.state == states.SUCCESS and done.runtime == 0.5 and done.worker == W
    assert "SUCCESS" in done.line() and "runtime=0.5000s" in done.line()
    assert done.as_json()["runtime"] == 0.5 and done.as_json()["type"] == "task"
    assert source.poll() == []


def test_everything_between_two_polls_is_still_seen_in_order() -> None:
    source = EventSource()
    source.poll()
    task_id = str(tasks.add.delay(1, 2).id)
    now = timezone.now()
    claimed = claim_one(task_id, now)
    queue.settle([], W, [claimed], now + dt.timedelta(milliseconds=1))
    queue.settle(
        [
            outcome(
                claimed,
                states.FAILURE,
                now + dt.timedelta(milliseconds=2),
                exc_type="builtins.ValueError",
                exc_message="no\nway",
            )
        ],
        W,
        [],
        timezone.now(),
    )
    events = source.poll()
    assert trail(events) == [
        (s, task_id) for s in (states.PENDING, states.RECEIVED, states.STARTED, states.FAILURE)
    ]
    assert "error=ValueError: no way" in events[-1].line()
    assert events[-1].as_json()["exc_message"] == "no\nway"


def test_retries_and_revokes() -> None:
    source = EventSource()
    source.poll()
    retried = str(tasks.add.delay(1, 2).id)
    claimed = claim_one(retried, timezone.now())
    queue.settle([], W, [claimed], timezone.now())
    source.poll()
    later = timezone.now() + dt.timedelta(minutes=5)
    queue.complete(
        [
            outcome(
                claimed,
                states.RETRY,
                timezone.now(),
                retry_eta=later,
                exc_type="builtins.OSError",
                exc_message="again",
            )
        ]
    )
    (retry,) = source.poll()
    assert (retry.state, retry.retries, retry.eta) == (states.RETRY, 1, later)
    assert "retries=1" in retry.line() and "eta=" in retry.line()
    assert source.poll() == []  # a row waiting to retry is read in full once
    revoked = str(tasks.add.delay(3, 4).id)
    queue.revoke([revoked], "test", timezone.now())
    assert trail(source.poll()) == [(states.PENDING, revoked), (states.REVOKED, revoked)]


def test_since_replays_the_recent_past_and_workers_come_and_go() -> None:
    now = timezone.now()
    WorkerRow.objects.create(
        name=W,
        hostname="h",
        pid=1,
        queues=[],
        concurrency=1,
        pool="solo",
        started_at=now,
        last_seen=now,
    )
    task_id = str(tasks.add.delay(1, 2).id)
    source = EventSource(since=now - dt.timedelta(seconds=60))
    events = source.poll()
    assert [(e.kind, e.state) for e in events] == [
        ("worker", WORKER_ONLINE),
        ("task", states.PENDING),
    ]
    assert events[0].line().endswith(f"WORKER-ONLINE {W}")
    WorkerRow.objects.filter(pk=W).update(stopped_at=timezone.now())
    (stopped,) = source.poll()
    assert (stopped.kind, stopped.state, stopped.id) == ("worker", WORKER_OFFLINE, W)
    assert stopped.as_json() == {
        "type": "worker",
        "state": WORKER_OFFLINE,
        "timestamp": stopped.timestamp.isoformat(),
        "id": W,
    }
    assert task_id


def test_a_row_committed_late_within_the_lookback_is_not_missed() -> None:
    source = EventSource()
    source.poll()
    source.poll()
    # A row stamped two seconds ago (its transaction committed just now).
    message = tasks.add.build_message((1, 1))
    message.created_at = message.eta = timezone.now() - dt.timedelta(seconds=2)
    from djtasks.dashboard import uuid7_floor

    message.id = uuid7_floor(message.created_at)
    queue.enqueue([message])
    assert trail(source.poll()) == [(states.PENDING, str(message.id))]


def test_rows_made_final_at_once_have_no_pending() -> None:
    source = EventSource()
    source.poll()
    now = timezone.now()
    queue.enqueue(
        [
            queue._final_message(
                "tests.testapp.tasks.add",
                str(tasks.add.build_message((1, 1)).id),
                states.REVOKED,
                queue.REVOKED_ERROR,
                "chain broken",
                now,
            )
        ]
    )
    assert [e.state for e in source.poll()] == [states.REVOKED]


def test_filters() -> None:
    task = Event("task", states.SUCCESS, timezone.now(), "1", name="shop.tasks.send", queue="mail")
    worker = Event("worker", WORKER_ONLINE, timezone.now(), "w")
    assert Filter()(task) and Filter()(worker)
    assert Filter(names=["shop.*"])(task) and not Filter(names=["other.*"])(task)
    assert Filter(queues=["mail"])(task) and not Filter(queues=["default"])(task)
    assert Filter(states=["SUCCESS"])(task) and not Filter(states=["FAILURE"])(task)
    assert not Filter(queues=["mail"])(worker) and Filter(states=[WORKER_ONLINE])(worker)


def test_taskctl_events_prints_json_lines_and_stops_at_its_limit() -> None:
    first, second = tasks.add.delay(1, 2), tasks.echo.delay("x")
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "taskctl",
        "events",
        "--json",
        "--since",
        "60",
        "--max-events",
        "1",
        "--name",
        "tests.testapp.tasks.echo",
        "--interval",
        "0.05",
        stdout=out,
        stderr=err,
    )
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["id"] == str(second.id) and json.loads(line)["state"] == "PENDING"
    out = io.StringIO()
    call_command(
        "taskctl",
        "events",
        "--since",
        "60",
        "--duration",
        "0.3",
        "--interval",
        "0.05",
        stdout=out,
        stderr=err,
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and f"tests.testapp.tasks.add[{first.id}]" in lines[0]
    assert "Following task events" in err.getvalue()
    assert TaskRecord.objects.count() == 2
