"""Real workers: every way a task can end, ends in a final state that says why."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from djtasks import AsyncResult, states
from djtasks.exceptions import EncodeError, MaxRetriesExceededError, TaskRevokedError
from djtasks.models import TaskRecord
from tests.acceptance.helpers import runs, wait_for_runs, wait_until_finished
from tests.support import wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution
from tests.testapp.tasks import BoomError, FlakyError

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20  # seconds: generous, so a loaded CI machine does not fail these


def bad_row(
    name: str, payload: str, content_type: str = "application/json", headers: Any = None
) -> str:
    """Write a task row straight into the table, as a buggy or hostile producer might."""
    row = TaskRecord.objects.create(
        name=name, payload=payload, content_type=content_type, headers=headers or {}
    )
    return str(row.id)


def test_bad_rows_end_failure_saying_why_and_the_worker_goes_on(
    worker: Any, tmp_path: Path
) -> None:
    w = worker(concurrency=2)
    target = tmp_path / "must-not-exist"
    cases = {
        bad_row("subprocess.check_output", f'[[["touch", "{target}"]], {{}}]'): (
            "djtasks.exceptions.NotRegistered",
            "task 'subprocess.check_output' is not registered",
        ),
        bad_row("tests.testapp.tasks.record", "{this is not json"): (
            "djtasks.exceptions.DecodeError",
            "cannot decode the arguments: payload does not decode as json",
        ),
        bad_row("tests.testapp.tasks.record", '{"args": [1]}'): (
            "djtasks.exceptions.DecodeError",
            "cannot decode the arguments: payload is not [args, kwargs]",
        ),
        bad_row(
            "tests.testapp.tasks.record",
            "gASVCAAAAAAAAACMBGV2aWyULg==",
            content_type="application/x-python-serialize",
        ): (
            "djtasks.exceptions.ContentDisallowed",
            "content type 'application/x-python-serialize' is not accepted",
        ),
        bad_row("tests.testapp.tasks.add", "[[1], {}]"): (
            "builtins.TypeError",
            "missing 1 required positional argument: 'y'",
        ),
        bad_row("tests.testapp.tasks.record", "[[], {}]", headers=[1, 2]): (
            "djtasks.exceptions.DecodeError",
            "the headers are not a JSON object: [1, 2]",
        ),
        bad_row("tests.testapp.tasks.record", "[[], {}]", headers="text"): (
            "djtasks.exceptions.DecodeError",
            "the headers are not a JSON object: 'text'",
        ),
    }
    # Odd but harmless headers: the task just runs.
    odd = bad_row("tests.testapp.tasks.record", '[["odd"], {}]', headers={"timelimit": [1, 2, 3]})
    wait_until_finished([*cases, odd], timeout=WAIT)
    for task_id, (exc_type, message) in cases.items():
        row = TaskRecord.objects.get(pk=task_id)
        assert (row.state, row.exc_type) == (states.FAILURE, exc_type), row.name
        assert message in row.exc_message, row.exc_message
        assert row.done_at is not None
    assert not target.exists()
    assert list(Execution.objects.values_list("task_id", flat=True)) == [odd]  # only it ran
    assert TaskRecord.objects.get(pk=odd).state == states.SUCCESS

    assert tasks.add.delay(20, 22).get(timeout=WAIT) == 42
    assert w.alive()


def test_a_task_that_raises_ends_failure_with_type_and_traceback(worker: Any) -> None:
    w = worker(concurrency=1)
    result = tasks.fail.delay("it broke")
    with pytest.raises(BoomError, match=r"^it broke$"):
        result.get(timeout=WAIT)
    row = TaskRecord.objects.get(pk=result.id)
    assert (row.state, row.exc_type, row.exc_message) == (
        states.FAILURE,
        "tests.testapp.tasks.BoomError",
        "it broke",
    )
    assert "Traceback (most recent call last)" in row.traceback
    assert 'tests/testapp/tasks.py", line' in row.traceback
    assert "raise BoomError(message)" in row.traceback
    assert result.traceback == row.traceback
    assert (row.worker, row.retries) == (w.name, 0)
    assert row.received_at <= row.started_at <= row.done_at
    assert row.runtime is not None
    assert isinstance(result.get(propagate=False), BoomError)
    assert tasks.add.delay(1, 1).get(timeout=WAIT) == 2  # the worker goes on


def test_retry_keeps_the_id_and_counts_retries(worker: Any) -> None:
    worker(concurrency=2)
    result = tasks.retry_until.delay(2)
    assert result.get(timeout=WAIT) == 2
    assert (result.state, result.retries) == (states.SUCCESS, 2)
    assert TaskRecord.objects.count() == 1
    attempts = runs(result.id)
    assert len(attempts) == 3
    gaps = [(b.created - a.created).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.1 for gap in gaps), gaps  # retry(countdown=0.1)


def test_max_retries_ends_in_max_retries_exceeded_error(worker: Any) -> None:
    worker(concurrency=1)
    result = tasks.retry_forever.delay()
    with pytest.raises(MaxRetriesExceededError, match="max_retries=2 reached"):
        result.get(timeout=WAIT)
    assert (result.state, result.retries, len(runs(result.id))) == (states.FAILURE, 2, 3)


def test_autoretry_backs_off_then_succeeds_or_gives_up(worker: Any) -> None:
    worker(concurrency=2)
    recovers = tasks.flaky.delay(2)
    gives_up = tasks.flaky.delay(5)
    assert recovers.get(timeout=WAIT) == 2
    with pytest.raises(FlakyError, match="run 2 fails"):
        gives_up.get(timeout=WAIT)
    assert (recovers.retries, gives_up.retries) == (2, 2)
    for result in (recovers, gives_up):
        attempts = runs(result.id)
        assert len(attempts) == 3
        gaps = [(b.created - a.created).total_seconds() for a, b in itertools.pairwise(attempts)]
        # retry_backoff=0.1 without jitter: 0.1 s, then 0.2 s.
        assert gaps[0] >= 0.1, gaps
        assert gaps[1] >= 0.2, gaps


def test_countdown_and_eta_are_respected(worker: Any) -> None:
    worker(concurrency=2)
    sent = timezone.now()
    by_countdown = tasks.record.apply_async(("countdown",), countdown=1.0)
    eta = timezone.now() + dt.timedelta(seconds=1.0)
    by_eta = tasks.record.apply_async(("eta",), eta=eta)
    now = tasks.record.delay("now")
    assert now.get(timeout=WAIT) == "now"
    assert by_countdown.get(timeout=WAIT) == "countdown"
    assert by_eta.get(timeout=WAIT) == "eta"
    [countdown_run] = runs(by_countdown.id)
    [eta_run] = runs(by_eta.id)
    assert countdown_run.created >= sent + dt.timedelta(seconds=1.0)
    assert eta_run.created >= eta
    assert TaskRecord.objects.get(pk=by_eta.id).started_at >= eta


def test_a_task_claimed_after_it_expired_is_revoked_with_the_reason(worker: Any) -> None:
    worker(concurrency=1)
    # Due in 0.5 s but expiring after 0.2 s: it can only be claimed too late.
    too_late = tasks.record.apply_async(("late",), countdown=0.5, expires=0.2)
    already = tasks.record.apply_async(("past",), expires=timezone.now() - dt.timedelta(seconds=1))
    in_time = tasks.record.apply_async(("fine",), expires=60)
    assert in_time.get(timeout=WAIT) == "fine"
    for result in (too_late, already):
        with pytest.raises(TaskRevokedError, match="expired before it could start"):
            result.get(timeout=WAIT)
        row = TaskRecord.objects.get(pk=result.id)
        assert (row.state, row.exc_type) == (states.REVOKED, "djtasks.exceptions.TaskRevokedError")
        assert runs(result.id) == []


def test_an_unencodable_return_value_ends_failure_saying_why(worker: Any) -> None:
    worker(concurrency=1)
    result = tasks.unencodable.delay()
    with pytest.raises(
        EncodeError, match="the return value cannot be stored: cannot encode object with json"
    ):
        result.get(timeout=WAIT)
    assert result.state == states.FAILURE
    assert tasks.add.delay(2, 2).get(timeout=WAIT) == 4


def test_progress_then_success_and_ignored_results(worker: Any) -> None:
    worker(concurrency=1)
    result = tasks.progress.delay(3)
    ignored = tasks.add.apply_async((1, 2), ignore_result=True)
    assert result.get(timeout=WAIT) == "done"
    row = TaskRecord.objects.get(pk=result.id)
    assert (row.state, row.custom_state) == (states.SUCCESS, "")
    assert AsyncResult(result.id).info == "done"
    assert ignored.get(timeout=WAIT) is None  # the state is kept, the value is not
    assert ignored.state == states.SUCCESS


def test_a_claimed_task_revoked_before_it_starts_never_runs(worker: Any) -> None:
    with transaction.atomic():
        first = tasks.sleep.delay(1.5)
        handed_over = tasks.record.delay("handed over")
        waiting = tasks.record.delay("waiting")
        revoked = tasks.record.delay("revoked")
    w = worker(concurrency=1)
    wait_for_runs(1)
    wait_until(
        lambda: TaskRecord.objects.filter(pk=revoked.id, state=states.RECEIVED).exists(),
        message="the worker to claim the task",
    )
    assert revoked.revoke() is True  # claimed, not started: it can still be stopped
    assert first.revoke() is False  # running
    assert [r.get(timeout=WAIT) for r in (first, handed_over, waiting)] == [
        1.5,
        "handed over",
        "waiting",
    ]
    with pytest.raises(TaskRevokedError, match=r"revoked by AsyncResult\.revoke\(\)"):
        revoked.get(timeout=WAIT)
    assert runs(revoked.id) == []
    w.wait_for_output(f"[{revoked.id}] was revoked before it started")


def test_strings_with_lone_surrogates_go_through_and_the_worker_goes_on(worker: Any) -> None:
    worker(concurrency=1)
    returned = tasks.lone_surrogate.delay()
    echoed = tasks.echo.delay("arg \udcff")
    assert returned.get(timeout=WAIT) == "bad \ud800 text"
    assert echoed.get(timeout=WAIT) == "arg \udcff"
    assert tasks.add.delay(3, 4).get(timeout=WAIT) == 7
