"""The dashboard: its figures (``djtasks.dashboard``), its pages, and its live data endpoint."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from djtasks import controls, dashboard, states
from djtasks.ids import uuid7
from djtasks.models import PausedQueue, TaskRecord, Worker

pytestmark = pytest.mark.django_db

DASHBOARD = "admin:djtasks_taskrecord_dashboard"
DATA = "admin:djtasks_taskrecord_dashboard_data"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # The day chart keeps its settled buckets in Django's cache.
    cache.clear()
    yield
    cache.clear()


def row(now: dt.datetime, **fields: Any) -> TaskRecord:
    fields.setdefault("name", "tests.testapp.tasks.echo")
    fields.setdefault("payload", "[[], {}]")
    fields.setdefault("eta", now)
    return TaskRecord.objects.create(id=uuid7(), created_at=now, **fields)


def finished(
    now: dt.datetime, ago: dt.timedelta, state: str = states.SUCCESS, **fields: Any
) -> TaskRecord:
    done = now - ago
    return row(done - dt.timedelta(seconds=1), state=state, done_at=done, **fields)


@pytest.fixture
def scene() -> dict[str, Any]:
    now = timezone.now()
    Worker.objects.create(
        name="w1@h",
        hostname="h",
        pid=1,
        queues=["a", "b"],
        concurrency=4,
        pool="prefork",
        started_at=now,
        last_seen=now,
    )
    Worker.objects.create(
        name="old@h",
        hostname="h",
        pid=2,
        queues=["a"],
        concurrency=2,
        pool="solo",
        started_at=now,
        last_seen=now - dt.timedelta(hours=2),
    )
    oldest = row(now - dt.timedelta(minutes=3), queue="a", eta=now - dt.timedelta(minutes=3))
    row(now, queue="a")
    row(now, queue="a", eta=now + dt.timedelta(hours=1))  # scheduled
    row(now, queue="b", state=states.RETRY, retries=1)
    row(now, queue="a", state=states.STARTED, worker="w1@h")
    row(now, queue="b", state=states.RECEIVED, worker="w1@h")
    finished(now, dt.timedelta(minutes=2), runtime=1.0)
    finished(now, dt.timedelta(minutes=30), runtime=3.0)
    failure = finished(
        now,
        dt.timedelta(minutes=10),
        states.FAILURE,
        exc_type="builtins.KeyError",
        exc_message="'sku'",
    )
    finished(now, dt.timedelta(hours=5), runtime=9.0)
    finished(now, dt.timedelta(hours=2), states.REVOKED)
    finished(now, dt.timedelta(days=2))  # outside every window
    return {"now": now, "oldest": oldest, "failure": failure}


def test_snapshot_figures(scene: dict[str, Any]) -> None:
    snap = dashboard.snapshot(timezone.now())
    assert snap.unfinished == {"PENDING": 3, "RETRY": 1, "RECEIVED": 1, "STARTED": 1}
    queues = {q.name: q for q in snap.queues}
    assert (queues["a"].ready, queues["a"].scheduled, queues["a"].running) == (2, 1, 1)
    assert (queues["b"].ready, queues["b"].scheduled, queues["b"].running) == (1, 0, 1)
    assert queues["a"].oldest_id == str(scene["oldest"].id)
    assert 170 < queues["a"].oldest_age(snap.now) < 400
    assert snap.finished_hour == {"SUCCESS": 2, "FAILURE": 1, "REVOKED": 0}
    assert snap.finished_day == {"SUCCESS": 3, "FAILURE": 1, "REVOKED": 1}
    assert snap.failure_rate_hour == pytest.approx(1 / 3)
    assert snap.failure_rate_day == pytest.approx(1 / 4)
    assert len(snap.minutes) == 60
    assert sum(b.succeeded for b in snap.minutes) == 2
    assert sum(b.failed for b in snap.minutes) == 1
    assert len(snap.day) == 96
    assert sum(b.succeeded for b in snap.day) == 3
    (runtime,) = snap.runtimes
    assert (runtime.name, runtime.count) == ("tests.testapp.tasks.echo", 2)
    assert runtime.p50 == pytest.approx(2.0) and runtime.p95 == pytest.approx(2.9)
    assert [f["id"] for f in snap.failures] == [str(scene["failure"].id)]
    workers = {w.name: w for w in snap.workers}
    assert workers["w1@h"].online and workers["w1@h"].running == 2
    assert not workers["old@h"].online
    assert snap.workers_online == 1


def test_settled_buckets_are_read_once(scene: dict[str, Any]) -> None:
    now = timezone.now()
    with CaptureQueriesContext(connection) as first:
        one = dashboard.snapshot(now)
    with CaptureQueriesContext(connection) as second:
        two = dashboard.snapshot(now)
    assert len(second.captured_queries) == len(first.captured_queries) - 1
    assert one.finished_day == two.finished_day
    assert [b.succeeded for b in one.day] == [b.succeeded for b in two.day]


def test_an_empty_table() -> None:
    snap = dashboard.snapshot(timezone.now())
    assert snap.queues == [] and snap.workers == [] and snap.runtimes == []
    assert snap.failure_rate_hour is None
    chart = dashboard.bar_chart(snap.minutes)
    assert chart["max"] == 1 and all(b["ok_h"] == 0 for b in chart["bars"])


def test_runtime_sample_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "RUNTIME_SAMPLE", 3)
    now = timezone.now()
    for minutes in (1, 2, 3, 40, 50):
        finished(now, dt.timedelta(minutes=minutes), runtime=float(minutes))
    snap = dashboard.snapshot(now)
    assert snap.runtime_sample == 3
    assert snap.runtimes[0].max == 3.0  # only the latest three
    assert dt.timedelta(minutes=2) < snap.runtime_window < dt.timedelta(minutes=4)


def test_bar_chart_geometry() -> None:
    now = timezone.now()
    buckets = [dashboard.Bucket(now, succeeded=30, failed=10), dashboard.Bucket(now, 5, 0)]
    chart = dashboard.bar_chart(buckets, per_minute=1)
    assert chart["max"] == 50  # a round ceiling above the peak of 40
    first = chart["bars"][0]
    assert first["ok_h"] == pytest.approx(120 * 30 / 50)
    assert first["bad_y"] + first["bad_h"] == pytest.approx(first["ok_y"])
    assert chart["total_ok"] == 35 and chart["total_bad"] == 10
    per_15 = dashboard.bar_chart(buckets, per_minute=15)
    assert per_15["max"] == pytest.approx(5)


@pytest.mark.parametrize("value, ceiling", [(0.3, 0.5), (1, 1), (7, 10), (12, 20), (240, 250)])
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert dashboard._nice_ceiling(value) == pytest.approx(ceiling)


def test_uuid7_floor_brackets_ids_made_at_that_time() -> None:
    before = timezone.now()
    made = uuid7()
    after = timezone.now() + dt.timedelta(milliseconds=1)
    assert dashboard.uuid7_floor(before) <= made < dashboard.uuid7_floor(after)


# -- the pages ------------------------------------------------------------------------


def login(*codenames: str, superuser: bool = False) -> Client:
    user = User.objects.create_user(
        f"u{User.objects.count()}", password="pw", is_staff=True, is_superuser=superuser
    )
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("url", [DASHBOARD, DATA])
def test_dashboard_permissions(url: str) -> None:
    assert Client().get(reverse(url)).status_code == 302
    assert login().get(reverse(url)).status_code == 403
    assert login("view_taskrecord").get(reverse(url)).status_code == 200


def test_dashboard_page_renders_every_section(scene: dict[str, Any]) -> None:
    reply = login("view_taskrecord").get(reverse(DASHBOARD))
    html = reply.content.decode()
    for section in ("summary", "throughput", "queues", "workers", "runtimes", "failures"):
        assert f'data-section="{section}"' in html
    assert "djtasks/dashboard.js" in html and "djtasks/admin.css" in html
    assert html.count('<svg class="djtasks-chart"') == 2
    assert 'class="djtasks-bar-ok"' in html and 'class="djtasks-bar-fail"' in html
    assert "builtins.KeyError" in html and str(scene["failure"].id) in html
    assert "w1@h" in html and "33.3%" in html
    assert "cdn" not in html.lower() and "https://" not in html  # nothing from outside


def test_data_endpoint_returns_sections_and_figures(scene: dict[str, Any]) -> None:
    reply = login("view_taskrecord").get(reverse(DATA))
    assert "no-store" in reply["Cache-Control"]
    data = reply.json()
    assert set(data["sections"]) == {
        "summary",
        "throughput",
        "queues",
        "workers",
        "runtimes",
        "failures",
    }
    assert data["stats"]["unfinished"]["PENDING"] == 3
    assert data["stats"]["finished_hour"]["FAILURE"] == 1
    assert [q["name"] for q in data["stats"]["queues"]] == ["a", "b"]
    assert '<svg class="djtasks-chart"' in data["sections"]["throughput"]
    # A later refresh sees new rows.
    row(timezone.now(), queue="c")
    data = login("view_taskrecord").get(reverse(DATA)).json()
    assert "c" in [q["name"] for q in data["stats"]["queues"]]


def test_queue_and_worker_controls_appear_once_registered(scene: dict[str, Any]) -> None:
    pause = controls.register(
        controls.Control(
            name="test-pause",
            label="Pause (test)",
            target="queue",
            permission="djtasks.change_taskrecord",
            question="Pause {target}?",
            run=lambda target, user: f"paused {target}",
        )
    )
    grow = controls.register(
        controls.Control(
            name="test-grow",
            label="Grow pool (test)",
            target="worker",
            permission="djtasks.change_worker",
            question="Grow {target}?",
            run=lambda target, user: f"grown {target}",
        )
    )
    try:
        viewer = login("view_taskrecord").get(reverse(DATA)).json()["sections"]
        assert "Pause" not in viewer["queues"] and "Grow pool" not in viewer["workers"]
        sections = login("view_taskrecord", superuser=True).get(reverse(DATA)).json()["sections"]
        assert (
            reverse("admin:djtasks_taskrecord_control", args=["test-pause", "a"])
            in sections["queues"]
        )
        assert (
            reverse("admin:djtasks_taskrecord_control", args=["test-grow", "w1@h"])
            in sections["workers"]
        )
    finally:
        controls.unregister(pause.name)
        controls.unregister(grow.name)


def test_remote_control_buttons_need_the_change_permission(scene: dict[str, Any]) -> None:
    def sections(client: Any) -> str:
        data = client.get(reverse(DATA)).json()["sections"]
        return data["queues"] + data["workers"] + client.get(reverse(DASHBOARD)).content.decode()

    html = sections(login(superuser=True))
    for label in ("Pause", "Shut down", "Grow pool"):
        assert label in html
    viewer = sections(login("view_taskrecord"))
    for label in ("Pause", "Shut down", "Grow pool"):
        assert label not in viewer


def test_paused_queues_are_marked_even_when_empty(scene: dict[str, Any]) -> None:
    PausedQueue.objects.create(name="a")
    PausedQueue.objects.create(name="quiet")
    snap = dashboard.snapshot(timezone.now())
    paused = {q.name: q.paused for q in snap.queues}
    assert paused == {"a": True, "b": False, "quiet": True}
    html = login("view_taskrecord").get(reverse(DATA)).json()["sections"]["queues"]
    assert html.count(">paused<") == 2
