"""Remote control without worker processes: djtasks.control, the worker's
RemoteControl (on a stand-in worker), and taskctl's checks and messages.

The same commands answered by real workers are in tests/acceptance/test_taskctl.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections, transaction
from django.utils import timezone

from djtasks import control, queue, signals, states
from djtasks.models import ControlCommand, ControlReply, PausedQueue, TaskRecord, TaskType
from djtasks.models import Worker as WorkerRow
from djtasks.worker.remote import RemoteControl
from tests.testapp import tasks

# broadcast() refuses to wait for replies inside a transaction: tests that
# wait commit; the others run in one (FAST).
pytestmark = pytest.mark.django_db(transaction=True)
FAST = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"


def run(*args: str) -> tuple[str, str, str]:
    """``taskctl *args`` in this process: stdout, stderr, and the CommandError ("" if none)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("taskctl", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), str(exc)
    return out.getvalue(), err.getvalue(), ""


def fake_worker(name: str = "fake@test", **attrs: Any) -> Any:
    return SimpleNamespace(name=name, queues=["default"], now=timezone.now, **attrs)


def worker_row(name: str, last_seen: dt.datetime, stopped_at: dt.datetime | None = None) -> None:
    WorkerRow.objects.create(
        name=name,
        hostname="host",
        pid=1,
        queues=["default"],
        concurrency=2,
        pool="prefork",
        started_at=last_seen,
        last_seen=last_seen,
        stopped_at=stopped_at,
    )


class Answering:
    """A RemoteControl polled in a thread of its own (its own connection), as a
    worker's loop would, until stopped."""

    def __init__(self, worker: Any) -> None:
        self.remote = RemoteControl(worker)
        self.remote.poll()  # the first poll only notes what was there before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(0.01):
                self.remote.poll()
        finally:
            connections.close_all()

    def __enter__(self) -> Answering:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


# -- the worker side -------------------------------------------------------------------------


@FAST
def test_a_worker_answers_each_command_once_and_ignores_older_ones() -> None:
    before = control.broadcast("ping", timeout=0)  # sent before the worker "starts"
    assert not before
    remote = RemoteControl(fake_worker())
    remote.poll()
    assert not ControlReply.objects.exists()

    control.broadcast("ping", timeout=0)
    remote.poll()
    remote.poll()
    assert list(ControlReply.objects.values_list("worker", "reply")) == [
        ("fake@test", {"ok": "pong"})
    ]


@FAST
def test_a_worker_skips_expired_commands_and_those_for_other_workers() -> None:
    remote = RemoteControl(fake_worker())
    remote.poll()
    ControlCommand.objects.create(command="ping", expires_at=timezone.now() - dt.timedelta(1))
    control.broadcast("ping", destination=["someone-else@test"], timeout=0)
    remote.poll()
    assert not ControlReply.objects.exists()
    control.broadcast("ping", destination=["someone-else@test", "fake@test"], timeout=0)
    remote.poll()
    assert ControlReply.objects.count() == 1


@FAST
def test_unknown_commands_and_bad_arguments_get_an_error_reply() -> None:
    remote = RemoteControl(fake_worker())
    remote.poll()
    control.broadcast("frobnicate", timeout=0)
    control.broadcast("pool_grow", {"n": "lots"}, timeout=0)
    control.broadcast("ping", {"unexpected": 1}, timeout=0)
    remote.poll()
    errors = [
        r["error"]
        for r in ControlReply.objects.order_by("command__created_at").values_list(
            "reply", flat=True
        )
    ]
    assert errors[0] == "unknown command 'frobnicate'"
    assert errors[1] == "ValueError: n must be a whole number >= 1, not 'lots'"
    assert errors[2].startswith("TypeError:") and "unexpected" in errors[2]


def test_broadcast_collects_replies_and_returns_once_every_expected_worker_answered() -> None:
    with Answering(fake_worker("a@test")), Answering(fake_worker("b@test")):
        started = time.monotonic()
        replies = control.broadcast("ping", destination=["a@test", "b@test"], timeout=10)
        took = time.monotonic() - started
    assert replies.replies == {
        "a@test": control.Reply("a@test", "pong"),
        "b@test": control.Reply("b@test", "pong"),
    }
    assert replies.missing == [] and not replies.errors
    assert took < 2, took
    # Answered by everyone it was for: deleted, with its replies.
    assert not ControlCommand.objects.exists() and not ControlReply.objects.exists()


def test_broadcast_expects_the_online_workers_and_names_the_silent_ones() -> None:
    now = timezone.now()
    worker_row("a@test", now)
    worker_row("silent@test", now)
    with Answering(fake_worker("a@test")):
        replies = control.broadcast("ping", timeout=0.5)
    assert list(replies.replies) == ["a@test"]
    assert replies.missing == ["silent@test"]
    # Not answered by all: kept until it expires, in case the silent one wakes,
    # shortly after the sender stopped waiting.
    command = ControlCommand.objects.get()
    ttl = (command.expires_at - command.created_at).total_seconds()
    assert 0.5 + control.EXPIRY_GRACE - 0.5 < ttl < 0.5 + control.EXPIRY_GRACE + 0.5


@FAST
def test_expired_commands_are_deleted_by_the_next_sender() -> None:
    old = ControlCommand.objects.create(
        command="ping", expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    ControlReply.objects.create(command=old, worker="w", reply={"ok": "pong"})
    control.broadcast("ping", timeout=0)
    assert list(ControlCommand.objects.values_list("command", flat=True)) == ["ping"]
    assert ControlCommand.objects.get().pk != old.pk
    assert not ControlReply.objects.exists()


@FAST
def test_broadcast_refuses_to_wait_inside_a_transaction() -> None:
    with transaction.atomic(), pytest.raises(control.RemoteControlError, match="commits"):
        control.broadcast("ping", timeout=1)
    with transaction.atomic():
        control.broadcast("pause", {"queue": "q"}, timeout=0)  # fire and forget is fine
    assert ControlCommand.objects.count() == 1


# -- inspect and control with nobody listening ----------------------------------------------


def test_no_reply_is_an_error_with_a_message() -> None:
    _, _, error = run("inspect", "ping", "--timeout", "0.2")
    assert error == (
        "no workers replied within 0.2 s (see `taskctl status`; a longer --timeout may help)"
    )
    ControlCommand.objects.all().delete()
    # Options may also follow a control command.
    _, err, error = run("control", "pool_grow", "2", "-d", "w1@test,w9@test", "--timeout", "0.2")
    assert "w1@test did not reply within 0.2 s." in err and "w9@test did not reply" in err
    assert error.startswith("no workers replied")
    command = ControlCommand.objects.get()
    assert (command.command, command.arguments, command.destination) == (
        "pool_grow",
        {"n": 2},
        ["w1@test", "w9@test"],
    )


@FAST
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "everything"], "invalid choice: 'everything'"),
        (["control", "reboot"], "invalid choice: 'reboot'"),
        (["control", "pool_grow", "x"], "N must be a whole number >= 1, not 'x'"),
        (["control", "pool_shrink", "0"], "N must be a whole number >= 1, not '0'"),
        (["control", "pool_grow"], "the following arguments are required: N"),
        (["inspect", "ping", "--timeout", "soon"], "--timeout takes seconds > 0, not 'soon'"),
        (["control", "rate_limit", ADD, "fast"], "rate must look like '10/s'"),
        (["control", "rate_limit", "no.such.task", "1/s"], "unknown task 'no.such.task'"),
        (["control", "time_limit", ADD, "-1", "5"], "the soft time limit must be a number"),
        (["control", "time_limit", ADD, "5", "soon"], "the hard time limit must be a number"),
        (["control", "time_limit", ADD, "10", "5"], "must not exceed the hard limit"),
        (["control", "add_consumer", " "], "a queue name has 1 to 100 characters"),
        (["revoke", "not-a-uuid"], "'not-a-uuid' is not a task id"),
        (["pause", "q" * 101], "a queue name has 1 to 100 characters"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(args: list[str], message: str) -> None:
    _, _, error = run(*args)
    assert message in error
    assert not ControlCommand.objects.exists()


def test_json_output() -> None:
    with Answering(fake_worker("a@test")):
        out, _, error = run("inspect", "ping", "-d", "a@test", "--json", "--timeout", "5")
    assert error == ""
    assert json.loads(out) == {"a@test": {"ok": "pong"}}


# -- limits stored for the cluster ------------------------------------------------------


def test_rate_limit_is_stored_for_every_worker_and_reset_with_zero() -> None:
    TaskType.objects.create(name=ADD, rate_tat=timezone.now())
    out, err, error = run("control", "rate_limit", ADD, "10/m", "--timeout", "0.2")
    assert error == ""  # stored: workers started later read it
    assert f"Stored the new rate limit of {ADD}." in out
    assert "no workers replied" in err and "read the stored change" in err
    assert "declared without rate_limit or concurrency_limit" in err
    row = TaskType.objects.get(pk=ADD)
    assert row.rate_limit == "10/m" and row.rate_tat is not None  # the limiter's state kept
    assert queue.task_types()[ADD].rate_limit == "10/m"
    run("control", "rate_limit", ADD, "0", "--timeout", "0.2")
    assert TaskType.objects.get(pk=ADD).rate_limit == ""


@FAST
def test_time_limit_is_stored_and_zero_removes_it() -> None:
    change = control.time_limit(ADD, "1.5", 3, timeout=0)
    assert not change.replies and not change.note
    row = TaskType.objects.get(pk=ADD)
    assert (row.soft_time_limit, row.time_limit) == (1.5, 3.0)
    control.time_limit(ADD, 0, "none", timeout=0)
    row = TaskType.objects.get(pk=ADD)
    assert (row.soft_time_limit, row.time_limit) == (None, None)


def test_the_worker_reads_a_new_time_limit_before_it_replies() -> None:
    seen: list[Any] = []
    worker = fake_worker(options=SimpleNamespace(pool="threads"), overrides={})

    def refresh() -> None:
        seen.append(queue.task_types().get(ADD))
        types = queue.task_types()
        worker.overrides = {n: (t.soft_time_limit, t.time_limit) for n, t in types.items()}

    worker.refresh_runtime_state = refresh
    with Answering(worker):
        change = control.time_limit(ADD, 2, 4, destination=["fake@test"], timeout=5)
    assert change.replies.replies["fake@test"].value == (
        f"{ADD}: soft 2 s, hard 4 s for the next runs (the threads pool enforces the soft "
        "limit only)"
    )
    assert seen[-1].time_limit == 4.0


# -- pause and resume -------------------------------------------------------------------


def test_pause_and_resume_store_the_queue_state_even_with_no_worker_listening() -> None:
    out, _, error = run("pause", "reports", "--timeout", "0.2")
    assert error == "" and "Queue reports paused." in out
    row = PausedQueue.objects.get()
    assert row.name == "reports" and "@" in row.paused_by
    assert queue.paused_queues() == {"reports"}
    out, _, _ = run("pause", "reports", "--timeout", "0.2")
    assert "Queue reports was already paused." in out
    out, _, error = run("resume", "reports", "--timeout", "0.2")
    assert error == "" and "Queue reports resumed." in out
    assert not PausedQueue.objects.exists()
    out, _, _ = run("resume", "reports", "--timeout", "0.2")
    assert "Queue reports was not paused." in out


# -- revoke ------------------------------------------------------------------------------


@FAST
def test_revoke_revokes_what_has_not_started_and_explains_the_rest() -> None:
    waiting = tasks.add.delay(1, 2).id
    unknown = "01890000-0000-7000-8000-000000000000"
    out, err, error = run("revoke", waiting, unknown)
    assert f"{waiting}: revoked (it had not started)" in out
    assert f"{unknown}: not revoked: no task with this id" in err
    assert error == "1 of 2 task(s) could not be revoked"
    row = TaskRecord.objects.get(pk=waiting)
    assert row.state == states.REVOKED and row.exc_message == "revoked with taskctl"

    report = control.revoke([waiting.upper()])
    assert report.failed == {waiting: "already finished (REVOKED)"}


def test_revoke_terminate_asks_the_worker_that_holds_the_task() -> None:
    task_id = tasks.add.delay(1, 2).id
    [claimed] = queue.claim("a@test", ["default"], 1, timezone.now(), 60)
    assert queue.start("a@test", [claimed], timezone.now()) == {task_id}
    killed: list[str] = []
    pool = SimpleNamespace(
        running=lambda: [] if killed else [SimpleNamespace(claimed=claimed)],
        take_unstarted=lambda: [],
    )
    worker = fake_worker(
        "a@test",
        options=SimpleNamespace(pool="prefork"),
        pool=pool,
        terminate=lambda t: killed.append(t) or True,
        pending=[],
    )
    heard: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append({"sender": sender, **kwargs})

    signals.task_revoked.connect(receiver)
    try:
        with Answering(fake_worker("b@test")), Answering(worker):
            report = control.revoke([task_id], terminate=True, timeout=5)
    finally:
        signals.task_revoked.disconnect(receiver)
    assert killed == [task_id]
    assert report.terminated == {task_id: "a@test"} and not report.failed
    assert list(report.replies.replies) == ["a@test"]  # only the holder was asked
    [event] = heard
    assert event["sender"] is tasks.add and event["request"].id == task_id
    assert (event["terminated"], event["signum"], event["expired"]) == (True, 9, False)


# -- purge ---------------------------------------------------------------------------------


def _queue_rows() -> dict[str, list[str]]:
    later = timezone.now() + dt.timedelta(hours=1)
    ids = {
        "waiting": [tasks.add.delay(1, 1).id, tasks.add.apply_async((1, 1), eta=later).id],
        "other": [tasks.add.apply_async((1, 1), queue="other").id],
        "claimed": [tasks.add.delay(1, 1).id],
    }
    queue.claim("w@test", ["default"], 1, timezone.now(), 60)  # the oldest ready one
    claimed = TaskRecord.objects.filter(state=states.RECEIVED).values_list("pk", flat=True)
    ids["claimed"] = [str(pk) for pk in claimed]
    ids["waiting"] = [
        str(pk)
        for pk in TaskRecord.objects.filter(queue="default", state=states.PENDING).values_list(
            "pk", flat=True
        )
    ]
    return ids


@FAST
def test_purge_counts_asks_and_deletes_only_waiting_tasks(monkeypatch: Any) -> None:
    ids = _queue_rows()
    assert control.waiting(["default"]) == control.Waiting(2, 1)
    asked: list[str] = []

    monkeypatch.setattr("builtins.input", lambda q: asked.append(q) or "n")
    _, _, error = run("purge", "-Q", "default")
    assert error == "purge cancelled; nothing was deleted"
    assert asked == [
        "Delete 2 waiting task(s) (1 of them scheduled for later) from queue(s) "
        "default? This cannot be undone. [y/N] "
    ]
    assert TaskRecord.objects.count() == 4

    monkeypatch.setattr("builtins.input", lambda q: "y")
    out, _, error = run("purge", "-Q", "default")
    assert error == "" and "Purged 2 task(s) from queue(s) default." in out
    assert set(TaskRecord.objects.values_list("queue", "state")) == {
        ("default", states.RECEIVED),
        ("other", states.PENDING),
    }
    assert [
        str(pk) for pk in TaskRecord.objects.filter(queue="default").values_list("pk", flat=True)
    ] == ids["claimed"]

    out, _, _ = run("purge", "--force", "--json")
    assert json.loads(out) == {"purged": 1}
    out, _, _ = run("purge", "--noinput")
    assert "No tasks waiting in any queue." in out


@FAST
def test_purge_without_a_terminal_cancels(monkeypatch: Any) -> None:
    tasks.add.delay(1, 1)

    def no_terminal(question: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", no_terminal)
    _, _, error = run("purge")
    assert error == "purge cancelled; nothing was deleted"
    assert TaskRecord.objects.count() == 1


# -- status ----------------------------------------------------------------------------------


@FAST
def test_status_tells_online_offline_and_stopped_workers_apart() -> None:
    now = timezone.now()
    beat = control.heartbeat_interval()
    worker_row("up@test", now - dt.timedelta(seconds=beat))
    worker_row("gone@test", now - dt.timedelta(seconds=3 * beat))
    worker_row("done@test", now - dt.timedelta(minutes=5), stopped_at=now - dt.timedelta(minutes=5))
    worker_row("ancient@test", now - dt.timedelta(days=3), stopped_at=now - dt.timedelta(days=3))
    assert [(w.name, w.state) for w in control.status(now)] == [
        ("up@test", "online"),
        ("gone@test", "offline"),
        ("done@test", "stopped"),
    ]

    out, _, error = run("status")
    assert error == ""
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATE",
        "PID",
        "POOL",
        "QUEUES",
        "PROCESSED",
        "LAST",
        "SEEN",
    ]
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["up@test", "online"],
        ["gone@test", "offline"],
        ["done@test", "stopped"],
    ]
    assert "1 online, 1 offline, 1 stopped." in out

    out, _, _ = run("status", "--json")
    data = json.loads(out)
    assert [w["state"] for w in data["workers"]] == ["online", "offline", "stopped"]
    assert data["paused_queues"] == []


@FAST
def test_status_fails_when_no_worker_is_online() -> None:
    worker_row("gone@test", timezone.now() - dt.timedelta(hours=1))
    out, _, error = run("status")
    assert error == "no workers online"
    assert "0 online, 1 offline, 0 stopped." in out
