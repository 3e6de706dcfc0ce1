"""The API's worker routes answered by a real ``taskworker``, and ``taskctl events``
following a real run (a subprocess each).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from djtasks import states
from djtasks.models import TaskRecord
from tests.support import wait_until
from tests.testapp import tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "acceptance-" + "a" * 40


def post(client: Client, url: str, body: Any = None) -> Any:
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def test_a_worker_inspected_resized_and_shut_down_through_the_api(
    worker: Any, manage_py: Any, settings: Any
) -> None:
    settings.DJTASKS_API_TOKENS = {TOKEN: "ops"}
    User.objects.create_superuser("ops", password="pw")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    events = manage_py(
        [
            "taskctl",
            "events",
            "--json",
            "--name",
            "tests.testapp.tasks.*",
            "--duration",
            "60",
            "--max-events",
            "8",
        ],
        label="events",
    )
    w = worker(concurrency=1, pool="prefork")

    # A running task shows in the worker's answer.
    running = tasks.sleep.delay(30)
    wait_until(lambda: Execution.objects.exists(), 15, message="the sleep to start")
    body = client.get(f"/tasks/workers/{w.name}/", {"timeout": "5"}).json()
    assert body["online"] and body["running"] == 1 and body["load"] == 1.0
    assert [t["id"] for t in body["inspect"]["active"]] == [str(running.id)]
    assert body["inspect"]["reserved"] == []
    assert "tests.testapp.tasks.add" in body["inspect"]["registered"]

    grown = post(client, f"/tasks/workers/{w.name}/pool/grow/", {"n": 2, "timeout": 5})
    assert grown.status_code == 200, grown.content
    assert grown.json() == {
        "worker": w.name,
        "command": "pool_grow",
        "reply": "pool grew by 2 to 3",
    }
    # With room in the pool, a task applied through the API runs now.
    applied = post(client, "/tasks/tasks/apply/tests.testapp.tasks.add/", {"args": [2, 3]})
    assert applied.status_code == 201, applied.content
    task_id = applied.json()["id"]
    wait_until(
        lambda: TaskRecord.objects.filter(pk=task_id, state=states.SUCCESS).exists(),
        15,
        message="the add to succeed",
    )
    assert client.get(f"/tasks/tasks/{task_id}/").json()["result"] == 5
    shrunk = post(client, f"/tasks/workers/{w.name}/pool/shrink/", {"timeout": 5})
    assert shrunk.json()["reply"] == "pool shrank by 1 to 2"

    # Terminate the sleeper through the API: it ends REVOKED.
    revoked = post(client, f"/tasks/tasks/{running.id}/revoke/", {"terminate": True, "timeout": 5})
    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["outcome"] in ("terminated", "terminating")
    wait_until(
        lambda: TaskRecord.objects.get(pk=running.id).state == states.REVOKED,
        15,
        message="the sleep to be revoked",
    )

    # The stream saw both tasks' lives, in order for each.
    assert events.wait(30) == 0, events.log()
    seen = [json.loads(line) for line in events.log().splitlines() if line.startswith("{")]
    by_task: dict[str, list[str]] = {}
    for event in seen:
        by_task.setdefault(event["id"], []).append(event["state"])
    assert by_task[task_id] == ["PENDING", "RECEIVED", "STARTED", "SUCCESS"]
    assert by_task[str(running.id)] == ["PENDING", "RECEIVED", "STARTED", "REVOKED"]
    done = next(e for e in seen if e["state"] == "SUCCESS")
    assert done["worker"] == w.name and done["runtime"] >= 0

    shut = post(client, f"/tasks/workers/{w.name}/shutdown/", {"timeout": 5})
    assert shut.status_code == 200, shut.content
    assert shut.json()["reply"].startswith("shutting down")
    assert w.wait(30) == 0
    detail = client.get(f"/tasks/workers/{w.name}/").json()
    assert detail["state"] == "stopped" and detail["inspect"] is None
    assert "stopped" in post(client, f"/tasks/workers/{w.name}/shutdown/").json()["error"]
