"""The worker admin: status from heartbeats, load from held tasks, read-only."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from djtasks import states
from djtasks.ids import uuid7
from djtasks.models import TaskRecord, Worker

pytestmark = pytest.mark.django_db


def worker(name: str, seen_ago: float = 1, stopped: bool = False, **fields: Any) -> Worker:
    now = timezone.now()
    fields.setdefault("concurrency", 4)
    return Worker.objects.create(
        name=name,
        hostname="host",
        pid=123,
        queues=fields.pop("queues", ["default"]),
        pool="prefork",
        started_at=now - dt.timedelta(hours=1),
        last_seen=now - dt.timedelta(seconds=seen_ago),
        stopped_at=now if stopped else None,
        **fields,
    )


def held(worker_name: str, state: str = states.STARTED) -> TaskRecord:
    now = timezone.now()
    return TaskRecord.objects.create(
        id=uuid7(),
        name="t",
        payload="[[], {}]",
        state=state,
        worker=worker_name,
        created_at=now,
        eta=now,
        lease_expires=now + dt.timedelta(minutes=1),
    )


@pytest.fixture
def client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    return client


def test_status_load_and_queues(client: Client, settings: Any) -> None:
    settings.DJTASKS_VISIBILITY_TIMEOUT = 60
    worker("alive@h", seen_ago=5, queues=["default", "hipri"], processed=42)
    worker("silent@h", seen_ago=300)
    worker("gone@h", stopped=True)
    held("alive@h")
    held("alive@h", states.RECEIVED)
    held("silent@h")
    html = client.get(reverse("admin:djtasks_worker_changelist")).content.decode()
    assert 'djtasks-state-success">online<' in html
    assert 'djtasks-state-failure">offline<' in html
    assert 'djtasks-state-stopped">stopped<' in html
    assert "2 / 4" in html and "1 / 4" in html and "default, hipri" in html


@pytest.mark.parametrize(
    "status, expected",
    [
        ("online", {"alive@h"}),
        ("offline", {"silent@h"}),
        ("stopped", {"gone@h"}),
    ],
)
def test_status_filter(client: Client, status: str, expected: set[str]) -> None:
    worker("alive@h", seen_ago=5)
    worker("silent@h", seen_ago=3600)
    worker("gone@h", stopped=True)
    reply = client.get(reverse("admin:djtasks_worker_changelist"), {"status": status})
    assert {w.name for w in reply.context["cl"].result_list} == expected


def test_workers_are_read_only_but_old_rows_can_be_deleted(client: Client) -> None:
    w = worker("old@h", stopped=True)
    assert client.get(reverse("admin:djtasks_worker_add")).status_code == 403
    change = reverse("admin:djtasks_worker_change", args=[w.pk])
    page = client.get(change)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    client.post(change, {"name": "old@h", "pid": 999})
    assert Worker.objects.get(pk="old@h").pid == 123
    client.post(reverse("admin:djtasks_worker_delete", args=[w.pk]), {"post": "yes"})
    assert not Worker.objects.exists()


def test_worker_list_needs_permission() -> None:
    worker("w@h")
    staff = User.objects.create_user("s", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(reverse("admin:djtasks_worker_changelist")).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_worker"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert client.get(reverse("admin:djtasks_worker_changelist")).status_code == 200
