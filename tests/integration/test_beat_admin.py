"""The schedules admin: validation with reasons, descriptions, next runs, actions, permissions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from djtasks.beat import LEASE_NAME
from djtasks.models import BeatLease, PeriodicTask, TaskRecord

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"
LIST = "/admin/djtasks/periodictask/"


def form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "nightly",
        "task": ADD,
        "enabled": "on",
        "description": "",
        "kind": "crontab",
        "every": "",
        "period": "",
        "crontab": "0 3 * * *",
        "clocked_at_0": "",
        "clocked_at_1": "",
        "timezone": "Europe/Paris",
        "start_at_0": "",
        "start_at_1": "",
        "end_at_0": "",
        "end_at_1": "",
        "catch_up": "once",
        "args": "[1, 2]",
        "kwargs": "{}",
        "queue": "",
        "priority": "",
        "expires": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    adminform = response.context["adminform"]
    return {k: list(v) for k, v in adminform.form.errors.items()}


def test_add_form_creates_a_schedule(admin_client: Client) -> None:
    response = admin_client.post(f"{LIST}add/", form())
    assert response.status_code == 302
    row = PeriodicTask.objects.get(name="nightly")
    assert (row.kind, row.crontab, row.timezone, row.source) == (
        "crontab",
        "0 3 * * *",
        "Europe/Paris",
        "admin",
    )


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"crontab": "61 * * * *"}, "crontab", "out of range"),
        ({"crontab": "0 0 31 2 *"}, "crontab", "never matches a date"),
        ({"crontab": "0 3 * *"}, "crontab", "has 5 fields"),
        ({"kind": "interval", "every": "0", "period": "seconds"}, "every", "whole number"),
        ({"kind": "interval", "every": "5", "period": ""}, "period", "needs a period"),
        ({"task": "tests.testapp.tasks.addd"}, "task", "is not registered"),
        ({"args": "[1, 2, 3]"}, "args", "bad arguments"),
        ({"args": "{}"}, "args", "JSON list"),
        ({"args": "[1,"}, "args", "valid JSON"),
        ({"timezone": "Paris"}, "timezone", "unknown time zone"),
        ({"priority": "300"}, "priority", "-100 to 100"),
    ],
)
def test_invalid_input_is_refused_with_the_reason(
    admin_client: Client, overrides: dict[str, str], field: str, reason: str
) -> None:
    found = errors(admin_client.post(f"{LIST}add/", form(**overrides)))
    assert reason in " ".join(found.get(field, [])), found
    assert not PeriodicTask.objects.exists()


def test_list_shows_descriptions_next_runs_and_the_leader(admin_client: Client) -> None:
    PeriodicTask.objects.create(
        name="weekday",
        task=ADD,
        args=[1, 2],
        kind="crontab",
        crontab="0 7 * * 1-5",
        timezone="Europe/Paris",
    )
    PeriodicTask.objects.create(name="often", task=ADD, args=[1, 2], every=5, period="minutes")
    BeatLease.objects.create(
        pk=LEASE_NAME,
        holder="beat.1@host",
        acquired_at=timezone.now(),
        expires_at=timezone.now() + dt.timedelta(seconds=5),
    )
    page = admin_client.get(LIST).content.decode()
    assert "at 07:00 on Monday to Friday (Europe/Paris)" in page
    assert "every 5 minutes" in page
    assert "07:00:00 CE" in page  # next runs, in the entry's zone (CET or CEST)
    assert "Beat leader: <strong>beat.1@host</strong>" in page
    row = PeriodicTask.objects.get(name="weekday")
    change = admin_client.get(f"{LIST}{row.pk}/change/").content.decode()
    assert "djtasks-task-names" in change and ADD in change  # task name suggestions


def test_edit_keeps_beats_bookkeeping(admin_client: Client) -> None:
    row = PeriodicTask.objects.create(
        name="nightly",
        task=ADD,
        args=[1, 2],
        kind="crontab",
        crontab="0 3 * * *",
        timezone="Europe/Paris",
    )
    later = timezone.now() + dt.timedelta(hours=1)
    PeriodicTask.objects.filter(pk=row.pk).update(total_run_count=7, next_run_at=later)
    response = admin_client.post(f"{LIST}{row.pk}/change/", form(args="[5, 6]"))
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.args, row.total_run_count, row.next_run_at) == ([5, 6], 7, later)
    response = admin_client.post(f"{LIST}{row.pk}/change/", form(crontab="0 4 * * *"))
    row.refresh_from_db()
    assert (row.crontab, row.total_run_count, row.next_run_at) == ("0 4 * * *", 7, None)


def test_actions_enable_disable_and_run_now(admin_client: Client) -> None:
    row = PeriodicTask.objects.create(
        name="job", task=ADD, args=[2, 3], every=1, period="hours", queue="hipri"
    )
    admin_client.post(LIST, {"action": "disable", "_selected_action": [row.pk]})
    assert PeriodicTask.objects.get(pk=row.pk).enabled is False
    admin_client.post(LIST, {"action": "enable", "_selected_action": [row.pk]})
    assert PeriodicTask.objects.get(pk=row.pk).enabled is True
    response = admin_client.post(
        LIST, {"action": "run_now", "_selected_action": [row.pk]}, follow=True
    )
    task = TaskRecord.objects.get()
    assert (task.name, task.queue, task.headers["periodic_task"], task.headers["run_now"]) == (
        ADD,
        "hipri",
        "job",
        True,
    )
    assert str(task.id) in response.content.decode()
    assert PeriodicTask.objects.get(pk=row.pk).total_run_count == 0  # not a scheduled run


def test_run_now_reports_an_unknown_task(admin_client: Client) -> None:
    row = PeriodicTask.objects.create(name="gone", task="no.longer.here", every=1, period="hours")
    response = admin_client.post(
        LIST, {"action": "run_now", "_selected_action": [row.pk]}, follow=True
    )
    assert (
        "not sent: task &#x27;no.longer.here&#x27; is not registered" in response.content.decode()
    )
    assert not TaskRecord.objects.exists()


def test_a_view_only_user_cannot_act(client: Client) -> None:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_periodictask"))
    client.force_login(user)
    row = PeriodicTask.objects.create(name="job", task=ADD, args=[2, 3], every=1, period="hours")
    assert client.get(LIST).status_code == 200
    for action in ("disable", "run_now", "enable", "reset_to_settings"):
        client.post(LIST, {"action": action, "_selected_action": [row.pk]})
    assert PeriodicTask.objects.get(pk=row.pk).enabled is True
    assert not TaskRecord.objects.exists()
    response = client.post(f"{LIST}{row.pk}/change/", form(name="job", crontab="0 4 * * *"))
    assert response.status_code == 403
