"""The JSON status views (``djtasks.urls``), ``AsyncResult.status_url()`` and the progress tag."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Template
from django.test import Client, override_settings
from django.urls import path, reverse
from django.utils import timezone

from djtasks import AsyncResult, serialization, states
from djtasks.ids import uuid7
from djtasks.models import TaskRecord
from djtasks.signing import sign_task_id, unsign_task_id

pytestmark = pytest.mark.django_db


def row(**fields: Any) -> TaskRecord:
    """A task row as the queue would have left it (tests only; djtasks writes through queue.py)."""
    now = timezone.now()
    fields.setdefault("name", "tests.testapp.tasks.echo")
    fields.setdefault("payload", "[[1], {}]")
    fields.setdefault("created_at", now)
    fields.setdefault("eta", now)
    return TaskRecord.objects.create(**fields)


def encoded(value: Any) -> str:
    return serialization.encode(value, "json")[1]


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_user("staff", password="pw", is_staff=True)


@pytest.fixture
def member(db: None) -> User:
    return User.objects.create_user("member", password="pw")


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def get_status(client: Client, token: str) -> Any:
    return client.get(reverse("djtasks:status", args=[token]))


# -- signing ------------------------------------------------------------------------


def test_status_url_is_signed_and_reverses_under_the_include() -> None:
    task_id = uuid7()
    url = AsyncResult(task_id).status_url()
    assert url.startswith("/tasks/status/")
    token = url.rstrip("/").rsplit("/", 1)[1]
    assert unsign_task_id(token) == str(task_id)


def test_tokens_are_bound_to_the_secret_key() -> None:
    token = sign_task_id(uuid7())
    with override_settings(SECRET_KEY="another-key-entirely-for-this-test"):
        assert unsign_task_id(token) is None


def test_sign_rejects_a_non_uuid() -> None:
    with pytest.raises(ValueError, match="UUID"):
        sign_task_id("not-a-uuid")


class _UrlsWithoutDjtasks:
    urlpatterns = [path("admin/", admin.site.urls)]


@override_settings(ROOT_URLCONF=_UrlsWithoutDjtasks)
def test_status_url_without_the_include_says_what_to_add() -> None:
    with pytest.raises(ImproperlyConfigured, match=r'include\("djtasks.urls"\)'):
        AsyncResult(uuid7()).status_url()


# -- one task --------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "member", "staff"])
def test_signed_url_shows_the_state_to_anyone(who: str, staff: User, member: User) -> None:
    task = row(state=states.STARTED)
    user = {"anonymous": None, "member": member, "staff": staff}[who]
    reply = get_status(client_for(user), sign_task_id(task.id))
    assert reply.status_code == 200
    assert reply.json() == {
        "id": str(task.id),
        "state": "STARTED",
        "ready": False,
        "progress": None,
    }
    assert "no-cache" in reply["Cache-Control"]


def test_unknown_id_with_a_valid_signature_is_pending() -> None:
    task_id = uuid7()
    reply = get_status(Client(), sign_task_id(task_id))
    assert reply.json() == {
        "id": str(task_id),
        "state": "PENDING",
        "ready": False,
        "progress": None,
    }


@pytest.mark.parametrize("who", ["anonymous", "member"])
@pytest.mark.parametrize("forge", ["plain", "tampered-signature", "other-task", "garbage"])
def test_unsigned_or_tampered_tokens_are_404(who: str, forge: str, member: User) -> None:
    task = row(state=states.SUCCESS, result=encoded(1), result_content_type="application/json")
    good = sign_task_id(task.id)
    other = row()
    token = {
        "plain": str(task.id),
        "tampered-signature": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "other-task": f"{other.id}:{good.split(':', 1)[1]}",
        "garbage": "%3Cscript%3E",
    }[forge]
    reply = get_status(client_for(member if who == "member" else None), token)
    assert reply.status_code == 404


def test_staff_may_use_a_plain_id(staff: User) -> None:
    task = row(
        state=states.SUCCESS, result=encoded({"n": 1}), result_content_type="application/json"
    )
    reply = get_status(client_for(staff), str(task.id))
    assert reply.status_code == 200
    assert reply.json()["result"] == {"n": 1}
    assert get_status(client_for(staff), "not-a-task-id").status_code == 404


def test_inactive_staff_is_not_staff(staff: User) -> None:
    task = row()
    client = client_for(staff)
    staff.is_active = False
    staff.save()
    assert get_status(client, str(task.id)).status_code == 404


def test_post_is_not_allowed() -> None:
    task = row()
    reply = Client().post(reverse("djtasks:status", args=[sign_task_id(task.id)]))
    assert reply.status_code == 405


# -- what the reply reveals ------------------------------------------------------------


def test_result_and_traceback_only_for_staff(staff: User, member: User) -> None:
    ok = row(state=states.SUCCESS, result=encoded([1, 2]), result_content_type="application/json")
    bad = row(
        state=states.FAILURE,
        exc_type="builtins.ValueError",
        exc_message="secret detail",
        traceback="Traceback (most recent call last): secret",
    )
    for user in (None, member):
        body = get_status(client_for(user), sign_task_id(ok.id)).json()
        assert body == {
            "id": str(ok.id),
            "state": "SUCCESS",
            "ready": True,
            "progress": {"percent": 100.0},
        }
        body = get_status(client_for(user), sign_task_id(bad.id)).json()
        assert "result" not in body and "traceback" not in body and "error" not in body
        assert "secret" not in str(body)
    body = get_status(client_for(staff), sign_task_id(ok.id)).json()
    assert body["result"] == [1, 2]
    body = get_status(client_for(staff), sign_task_id(bad.id)).json()
    assert body["error"] == {"type": "builtins.ValueError", "message": "secret detail"}
    assert body["traceback"].startswith("Traceback")


def test_public_result_tasks_show_their_result_to_anyone(temp_task: Any) -> None:
    public = temp_task(lambda: None, public_result=True)
    task = row(
        name=public.name,
        state=states.SUCCESS,
        result=encoded({"url": "/x.png"}),
        result_content_type="application/json",
    )
    body = get_status(Client(), sign_task_id(task.id)).json()
    assert body["result"] == {"url": "/x.png"}


def test_progress_of_a_running_task(temp_task: Any) -> None:
    task = row(
        state=states.STARTED,
        custom_state="PROGRESS",
        result=encoded({"current": 3, "total": 12, "stage": "private note"}),
        result_content_type="application/json",
    )
    body = get_status(Client(), sign_task_id(task.id)).json()
    assert body["state"] == "PROGRESS"
    assert body["ready"] is False
    # Only the figures are public; the rest of the meta is like a result.
    assert body["progress"] == {"current": 3, "total": 12, "percent": 25.0}
    public = temp_task(lambda: None, public_result=True)
    shown = row(
        name=public.name,
        state=states.STARTED,
        custom_state="PROGRESS",
        result=encoded({"current": 1, "total": 4, "stage": "resizing"}),
        result_content_type="application/json",
    )
    body = get_status(Client(), sign_task_id(shown.id)).json()
    assert body["progress"] == {"current": 1, "total": 4, "percent": 25.0, "stage": "resizing"}


@pytest.mark.parametrize(
    "meta", [{"current": "x", "total": 3}, {"total": 0, "current": 0}, [1, 2], None]
)
def test_progress_meta_without_figures(meta: Any) -> None:
    task = row(
        state=states.STARTED,
        custom_state="PROGRESS",
        result=encoded(meta),
        result_content_type="application/json",
    )
    body = get_status(Client(), sign_task_id(task.id)).json()
    assert body["state"] == "PROGRESS"
    assert body["progress"] in (None, {"current": 0, "total": 0})


def test_undecodable_result_does_not_break_the_view(staff: User) -> None:
    task = row(
        state=states.SUCCESS,
        result="gASVAAAA",
        result_content_type="application/x-python-serialize",
    )
    body = get_status(client_for(staff), sign_task_id(task.id)).json()
    assert body["state"] == "SUCCESS"
    assert body["result"] is None


def test_results_json_cannot_encode_fall_back_to_repr(staff: User) -> None:
    task = row(
        state=states.SUCCESS,
        result=encoded({"when": timezone.now(), "tags": {"a"}, "raw": b"\x00ab"}),
        result_content_type="application/json",
    )
    body = get_status(client_for(staff), sign_task_id(task.id)).json()
    assert body["result"]["tags"] == ["a"]
    assert body["result"]["raw"] == "\x00ab"
    assert body["result"]["when"].endswith(("Z", "+00:00"))


# -- several tasks ---------------------------------------------------------------------


def test_bulk_answers_in_the_order_asked() -> None:
    a = row(state=states.SUCCESS)
    b = row(
        state=states.STARTED,
        custom_state="PROGRESS",
        result=encoded({"current": 1, "total": 2}),
        result_content_type="application/json",
    )
    missing = uuid7()
    tokens = [sign_task_id(b.id), sign_task_id(missing), sign_task_id(a.id)]
    reply = Client().get(reverse("djtasks:bulk-status"), {"id": tokens})
    assert reply.status_code == 200
    tasks = reply.json()["tasks"]
    assert [t["id"] for t in tasks] == [str(b.id), str(missing), str(a.id)]
    assert [t["state"] for t in tasks] == ["PROGRESS", "PENDING", "SUCCESS"]
    assert tasks[0]["progress"]["percent"] == 50.0


def test_bulk_with_one_forged_token_is_404(member: User) -> None:
    a, b = row(), row()
    reply = client_for(member).get(
        reverse("djtasks:bulk-status"), {"id": [sign_task_id(a.id), str(b.id)]}
    )
    assert reply.status_code == 404


def test_bulk_staff_plain_ids(staff: User) -> None:
    a = row(state=states.REVOKED)
    reply = client_for(staff).get(reverse("djtasks:bulk-status"), {"id": [str(a.id)]})
    assert reply.json()["tasks"][0]["state"] == "REVOKED"


def test_bulk_needs_ids_and_caps_them() -> None:
    assert Client().get(reverse("djtasks:bulk-status")).status_code == 400
    tokens = [sign_task_id(uuid.uuid4()) for _ in range(101)]
    reply = Client().get(reverse("djtasks:bulk-status"), {"id": tokens})
    assert reply.status_code == 400
    assert "at most 100" in reply.json()["error"]


def test_bulk_is_one_query(django_assert_num_queries: Any) -> None:
    tokens = [sign_task_id(row().id) for _ in range(20)]
    with django_assert_num_queries(1):
        reply = Client().get(reverse("djtasks:bulk-status"), {"id": tokens})
    assert len(reply.json()["tasks"]) == 20


# -- the template tag ------------------------------------------------------------------


def test_task_progress_tag_renders_a_bar_with_a_signed_url() -> None:
    task_id = uuid7()
    html = Template(
        "{% load djtasks %}{% djtasks_status_script %}"
        '{% task_progress task_id on_finish="done" interval=500 label="Report" %}'
    ).render(Context({"task_id": task_id}))
    assert '<script src="/static/djtasks/status.js" defer></script>' in html
    assert f'data-djtasks-status="{AsyncResult(task_id).status_url()}"' in html
    assert 'data-djtasks-bulk="/tasks/status/"' in html
    assert 'data-djtasks-on-finish="done"' in html
    assert 'data-djtasks-interval="500"' in html
    assert '<progress max="100" value="0"' in html


def test_task_progress_tag_takes_an_async_result() -> None:
    result = AsyncResult(uuid7())
    html = Template("{% load djtasks %}{% task_progress r %}").render(Context({"r": result}))
    assert f'data-djtasks-task="{result.id}"' in html


def test_formatting_filters() -> None:
    html = Template(
        "{% load djtasks %}{{ a|seconds }}|{{ b|seconds }}|{{ r|percent }}|{{ none|percent }}"
    ).render(Context({"a": 0.0123, "b": 75, "r": 0.031, "none": None}))
    assert html == "12 ms|1 min 15 s|3.1%|—"
