"""``GET metrics``: Prometheus's text format, parsed by prometheus_client, and its figures."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from djtasks import queue, states
from djtasks.api import metrics
from djtasks.models import TaskRecord
from tests.integration.test_api import finish, online_worker
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def scrape(settings: Any) -> tuple[dict[str, Any], str]:
    settings.DJTASKS_API_TOKENS = {"m" * 40: "prometheus"}
    User.objects.get_or_create(username="prometheus", defaults={"is_superuser": True})
    response = Client(HTTP_AUTHORIZATION="Bearer " + "m" * 40).get("/tasks/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.content.decode()
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def samples(family: Any, name: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if name is None or s.name == name
    }


def value(families: dict[str, Any], metric: str, **labels: str) -> float:
    for family in families.values():
        for s in family.samples:
            if s.name == metric and s.labels == labels:
                return s.value
    raise KeyError((metric, labels))


def test_an_empty_queue_parses(settings: Any) -> None:
    families, text = scrape(settings)
    assert value(families, "djtasks_workers_online") == 0
    assert value(families, "djtasks_metrics_window_seconds") == 300
    assert families["djtasks_worker_processed"].type == "counter"
    assert families["djtasks_task_runtime_window_seconds"].type == "histogram"
    assert families["djtasks_tasks_finished_window"].type == "gauge"
    for family in families.values():
        assert family.documentation, family.name  # every metric has its HELP
    assert text.endswith("\n")


def test_figures(settings: Any) -> None:
    now = timezone.now()
    for i in range(3):
        finish(str(tasks.add.delay(i, i).id))
    failed = str(tasks.add.delay(0, 0).id)
    finish(failed, states.FAILURE)
    TaskRecord.objects.filter(pk=failed).update(retries=2)
    old = str(tasks.add.delay(9, 9).id)
    finish(old)
    # Finished before the window: not counted.
    TaskRecord.objects.filter(pk=old).update(done_at=now - dt.timedelta(hours=1))
    waiting = tasks.add.delay(1, 1)
    TaskRecord.objects.filter(pk=waiting.id).update(eta=now - dt.timedelta(seconds=42))
    tasks.add.apply_async((1, 1), countdown=600)
    tasks.routed.delay()
    online_worker("w1@test", processed=17)
    held = tasks.echo.delay("x")
    got = queue.claim("w1@test", ["default"], 10, timezone.now(), 60)
    queue.release("w1@test", [c for c in got if c.id != str(held.id)])
    queue.settle([], "w1@test", [c for c in got if c.id == str(held.id)], timezone.now())
    from djtasks import control

    control.pause("lowpri", timeout=0)

    families, _ = scrape(settings)
    add = "tests.testapp.tasks.add"
    assert (
        value(families, "djtasks_tasks_finished_window", state="SUCCESS", queue="default", task=add)
        == 3
    )
    assert (
        value(families, "djtasks_tasks_finished_window", state="FAILURE", queue="default", task=add)
        == 1
    )
    assert value(families, "djtasks_task_retries_window", task=add) == 2
    assert (
        value(families, "djtasks_tasks_unfinished", state="PENDING", queue="default", task=add) == 2
    )
    assert (
        value(
            families,
            "djtasks_tasks_unfinished",
            state="STARTED",
            queue="default",
            task="tests.testapp.tasks.echo",
        )
        == 1
    )
    assert value(families, "djtasks_queue_depth", queue="default") == 1
    assert value(families, "djtasks_queue_scheduled", queue="default") == 1
    assert value(families, "djtasks_queue_running", queue="default") == 1
    assert 40 < value(families, "djtasks_queue_oldest_waiting_seconds", queue="default") < 100
    assert value(families, "djtasks_queue_paused", queue="lowpri") == 1
    assert value(families, "djtasks_queue_paused", queue="default") == 0
    assert value(families, "djtasks_workers_online") == 1
    assert value(families, "djtasks_worker_online", worker="w1@test") == 1
    assert value(families, "djtasks_worker_running", worker="w1@test") == 1
    assert value(families, "djtasks_worker_processed_total", worker="w1@test") == 17
    assert value(families, "djtasks_worker_concurrency", worker="w1@test") == 2
    assert (
        abs(
            value(families, "djtasks_worker_last_heartbeat_timestamp_seconds", worker="w1@test")
            - now.timestamp()
        )
        < 60
    )
    # Runtime 0.25 s each: below 0.25's bucket edge inclusive, above 0.1's.
    buckets = {
        s.labels["le"]: s.value
        for s in families["djtasks_task_runtime_window_seconds"].samples
        if s.labels["task"] == add
    }
    assert buckets["0.1"] == 0 and buckets["0.25"] == 4 and buckets["+Inf"] == 4
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert value(families, "djtasks_task_runtime_window_seconds_gcount", task=add) == 4
    assert value(families, "djtasks_task_runtime_window_seconds_gsum", task=add) == 1.0
    # Rates over the 300 s window: 8 enqueued in "default" (7 add, 1 echo) and 1 in lowpri;
    # 5 claimed (the 4 finished in the window and the held one).
    assert math.isclose(
        value(families, "djtasks_tasks_enqueued_per_second", queue="default"), 8 / 300
    )
    assert math.isclose(
        value(families, "djtasks_tasks_enqueued_per_second", queue="lowpri"), 1 / 300
    )
    assert math.isclose(
        value(families, "djtasks_tasks_claimed_per_second", queue="default"), 5 / 300
    )


def test_the_window_is_a_setting(settings: Any) -> None:
    settings.DJTASKS_METRICS_WINDOW = 60
    finish(str(tasks.add.delay(1, 1).id))
    families, _ = scrape(settings)
    assert value(families, "djtasks_metrics_window_seconds") == 60
    assert "60 s" in families["djtasks_tasks_finished_window"].documentation


def test_the_writer_escapes_labels_and_help() -> None:
    family = metrics.Family("x_seconds", "gauge", "help with \\ and\nnewline")
    family.add(1.5, task='a"b\\c\nd')
    family.add(float("inf"), task="inf")
    family.add(float("nan"), task="nan")
    family.add(3, task="int")
    text = metrics.write([family])
    (parsed,) = text_string_to_metric_families(text)
    assert parsed.documentation == "help with \\ and newline"
    got = {s.labels["task"]: s.value for s in parsed.samples}
    assert got['a"b\\c\nd'] == 1.5 and got["inf"] == math.inf and math.isnan(got["nan"])
    assert got["int"] == 3


def test_a_task_name_with_quotes_survives_the_round_trip(settings: Any) -> None:
    from djtasks.ids import uuid7

    queue.enqueue([tasks.add.build_message((1, 1))])
    TaskRecord.objects.update(name='odd "name"\\', id=uuid7())
    families, _ = scrape(settings)
    assert (
        value(
            families,
            "djtasks_tasks_unfinished",
            state="PENDING",
            queue="default",
            task='odd "name"\\',
        )
        == 1
    )
