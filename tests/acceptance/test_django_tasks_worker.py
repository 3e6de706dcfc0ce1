"""django.tasks on real ``taskworker`` processes (djtasks.backends.DatabaseBackend).

The worker (and a ``manage.py shell``) run with ``tests.django_tasks_app.settings``:
the test settings plus ``TASKS`` and the app holding the tasks. This process
enqueues, through a view; the worker runs; results are read here and from a
third process.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django.tasks", reason="django.tasks needs Django >= 6.0")

from django.db import transaction
from django.tasks import TaskResultStatus
from django.tasks.signals import task_enqueued

from djtasks.models import TaskRecord, Worker
from tests.acceptance.helpers import wait_until_finished
from tests.django_tasks_app import config
from tests.django_tasks_app import tasks as t
from tests.testapp import tasks as native

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = "tests.django_tasks_app.settings"
WAIT = 20


@pytest.fixture(autouse=True)
def tasks_settings(settings: Any) -> None:
    settings.TASKS = config.TASKS
    settings.DJTASKS_IMPORTS = config.IMPORTS
    settings.ROOT_URLCONF = "tests.django_tasks_app.urls"


@pytest.fixture
def signal_log(tmp_path: Path) -> Path:
    return tmp_path / "signals.jsonl"


@pytest.fixture
def start_worker(manage_py: Any, signal_log: Path) -> Any:
    """Start a taskworker with the django.tasks settings; return (name, process).

    ``failing=True``: some tasks fail on purpose, and Django's own receiver of
    ``task_finished`` logs their tracebacks ("Task id=... state=FAILED").
    """

    def start(
        queues: tuple[str, ...] = ("default",),
        pool: str = "prefork",
        concurrency: int = 2,
        failing: bool = False,
    ) -> tuple[str, Any]:
        name = f"dj-{uuid.uuid4().hex[:6]}@test"
        argv = [
            "taskworker",
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-Q",
            ",".join(queues),
            "--hostname",
            name,
            "--loglevel",
            "INFO",
        ]
        proc = manage_py(
            argv,
            label=name,
            env=_env(signal_log),
            ready=lambda: Worker.objects.filter(pk=name).exists(),
        )
        proc.expect_tracebacks = failing
        return name, proc

    return start


def _env(signal_log: Path) -> dict[str, str]:
    return {"DJANGO_SETTINGS_MODULE": SETTINGS, "DJTASKS_TEST_SIGNAL_LOG": str(signal_log)}


def signals_seen(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_enqueue_from_a_view_run_by_a_worker_result_from_another_process(
    client: Any, start_worker: Any, manage_py: Any, signal_log: Path
) -> None:
    enqueued_in: list[int] = []

    def on_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
        enqueued_in.append(os.getpid())

    name, worker = start_worker(failing=True)
    task_enqueued.connect(on_enqueued)
    try:
        response = client.get("/enqueue/", {"a": 2, "b": 3})
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == TaskResultStatus.READY
        # One transaction: the worker sees these five tasks at once, when it
        # commits (so async_count_rows counts every row of the test).
        with transaction.atomic():
            others = {
                "async": t.async_add.enqueue(20, 22),
                "async_orm": t.async_count_rows.enqueue(),
                "context": t.own_id.enqueue(),
                "failing": t.fails_with_value_error.enqueue(),
            }
            mine = native.add.delay(1, 2)  # a djtasks task, same table, same worker
    finally:
        task_enqueued.disconnect(on_enqueued)
    ids = [body["id"], mine.id, *(r.id for r in others.values())]
    assert wait_until_finished(ids, WAIT) == {"SUCCESS": 5, "FAILURE": 1}

    result = t.add.get_result(body["id"])
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.worker_ids == [name]
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert mine.get(timeout=1) == 3
    assert t.async_add.get_result(others["async"].id).return_value == 42
    assert t.async_count_rows.get_result(others["async_orm"].id).return_value == len(ids)
    assert t.own_id.get_result(others["context"].id).return_value == others["context"].id
    failed = t.fails_with_value_error.get_result(others["failing"].id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class is ValueError

    # A third process reads the result the worker wrote.
    code = (
        "import json, os; from django.tasks import default_task_backend as b; "
        f"r = b.get_result({body['id']!r}); "
        "print(json.dumps({'status': r.status, 'value': r.return_value, "
        "'workers': r.worker_ids, 'pid': os.getpid()}))"
    )
    shell = manage_py(["shell", "-c", code], label="shell", env=_env(signal_log))
    assert shell.wait(WAIT) == 0, shell.log()
    seen = json.loads(shell.log().strip().splitlines()[-1])
    assert seen["status"] == "SUCCESSFUL"
    assert seen["value"] == 5
    assert seen["workers"] == [name]
    assert seen["pid"] not in (os.getpid(), worker.pid)

    # task_enqueued where it was enqueued; task_started/finished where it ran.
    assert enqueued_in == [os.getpid()] * 5
    by_id = {}
    for line in signals_seen(signal_log):
        by_id.setdefault(line["id"], []).append(line)
    view_signals = by_id[body["id"]]
    assert [(s["signal"], s["status"]) for s in view_signals] == [
        ("started", "RUNNING"),
        ("finished", "SUCCESSFUL"),
    ]
    pids = {s["pid"] for s in view_signals}
    assert len(pids) == 1
    assert pids.isdisjoint({os.getpid(), worker.pid})  # a prefork child of the worker
    assert {s["sender"] for s in view_signals} == {"DatabaseBackend"}
    assert [s["status"] for s in by_id[others["failing"].id]] == ["RUNNING", "FAILED"]
    assert mine.id not in by_id  # djtasks' own tasks send djtasks' signals


def test_retries_and_time_limits_in_a_worker(start_worker: Any) -> None:
    name, _ = start_worker(queues=("retrying", "limited"), concurrency=3, failing=True)
    flaky = t.flaky.using(queue_name="retrying").enqueue(3)
    soft = t.sleep_for.using(queue_name="limited").enqueue(30)
    async_soft = t.async_sleep_for.using(queue_name="limited").enqueue(30)
    hard = t.stubborn_sleep.using(queue_name="limited").enqueue(30)
    ids = [flaky.id, soft.id, async_soft.id, hard.id]
    assert wait_until_finished(ids, WAIT) == {"SUCCESS": 1, "FAILURE": 3}

    result = t.flaky.get_result(flaky.id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value["attempt"] == 3
    assert result.attempts == 3
    assert result.worker_ids == [name] * 3
    assert [e.exception_class for e in result.errors] == [ValueError, ValueError]

    from djtasks.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

    for slow in (soft, async_soft):
        failed = slow.task.get_result(slow.id)
        assert failed.status == TaskResultStatus.FAILED
        assert failed.errors[-1].exception_class is SoftTimeLimitExceeded
    killed = t.stubborn_sleep.get_result(hard.id)
    assert killed.status == TaskResultStatus.FAILED
    assert killed.errors[-1].exception_class is TimeLimitExceeded
    assert killed.worker_ids == [name]
    runtime = TaskRecord.objects.get(pk=hard.id)
    assert (runtime.done_at - runtime.started_at).total_seconds() < 10


def test_threads_pool_runs_sync_and_async_tasks(start_worker: Any) -> None:
    name, _ = start_worker(pool="threads", concurrency=2)
    with transaction.atomic():
        results = [
            t.add.enqueue(1, 1),
            t.async_add.enqueue(2, 2),
            t.async_context.enqueue(),
            t.async_count_rows.enqueue(),
        ]
    assert wait_until_finished([r.id for r in results], WAIT) == {"SUCCESS": 4}
    finished = [r.task.get_result(r.id) for r in results]
    values = [f.return_value for f in finished]
    assert values == [2, 4, [1, results[2].id], 4]
    assert all(f.worker_ids == [name] for f in finished)
