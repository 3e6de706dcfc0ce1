"""Scenario 14: nothing leaked, nothing changed without permission and a CSRF token.

Covered elsewhere and not repeated: the status views' signing, staff-only
results and bulk requests (``tests/integration/test_views_status.py``), each
task admin action's own permission (``tests/integration/test_admin_tasks.py``),
the API's tokens and permissions (``tests/integration/test_api.py``), pickle
refused unless accepted and signed, by real workers
(``tests/acceptance/test_serialization_workers.py``).

Here, sweeping every djtasks view at once:

- arguments marked sensitive (``@task(sensitive=...)``, ``argsrepr=``) never
  reach the admin (list, task page, search, retried copies), the HTTP API,
  the status JSON or a DEBUG-level worker log, while the task itself gets them;
- the status JSON answers 404 to anyone without a valid signed URL, and a
  valid one never shows a non-staff user arguments, results or tracebacks;
- every action of every djtasks admin declares its permissions, and a
  view-only staff user POSTing any of them, or any control or API write,
  changes nothing;
- every state-changing admin view, control and session-authenticated API
  route refuses a POST without a CSRF token;
- pickle is refused unless accepted in settings and signed.
"""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, override_settings
from django.urls import reverse

from djtasks import AsyncResult, serialization, states
from djtasks.exceptions import ContentDisallowed
from djtasks.models import PausedQueue, PeriodicTask, TaskRecord, Worker
from tests.acceptance.helpers import wait_until_finished
from tests.chaos.app import tasks
from tests.chaos.conftest import report

# The CVV is not all hex digits: a task id in the JSON must not contain it by chance.
CARD, CVV, OTHER = "4111111111111111", "cvv-737", "hunter2-secret"
SECRETS = (CARD, CVV, OTHER)


def user(*codenames: str, staff: bool = True, superuser: bool = False) -> User:
    u = User.objects.create_user(
        f"u{uuid.uuid4().hex[:8]}", password="pw", is_staff=staff, is_superuser=superuser
    )
    u.user_permissions.set(
        Permission.objects.filter(content_type__app_label="djtasks", codename__in=codenames)
    )
    return User.objects.get(pk=u.pk)


def client(who: User | None, csrf: bool = False) -> Client:
    c = Client(enforce_csrf_checks=csrf)
    if who is not None:
        c.force_login(who)
    return c


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}"


# -- sensitive arguments ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_sensitive_arguments_reach_the_task_and_nothing_else(worker: Any, settings: Any) -> None:
    w = worker(concurrency=2, args=["--loglevel", "DEBUG"])
    failed = tasks.charge.delay(CARD, -1, cvv=CVV)
    paid = tasks.charge.apply_async((CARD, 5), {"cvv": CVV})
    hidden = tasks.effect.apply_async((7,), {"work": 0.0}, argsrepr="(a secret)", kwargsrepr="")
    by_hand = tasks.charge.apply_async((OTHER, 3), argsrepr="[redacted]")  # its own text
    ids = [failed.id, paid.id, hidden.id, by_hand.id]
    assert wait_until_finished(ids, timeout=30) == {states.FAILURE: 1, states.SUCCESS: 3}
    assert paid.get() == 5  # the task got its real arguments
    row = TaskRecord.objects.get(pk=failed.id)
    assert row.headers["argsrepr"] == f"[{CARD!r}, -1]".replace(repr(CARD), "'***'")
    assert row.headers["kwargsrepr"] == "{'cvv': '***'}"

    staff = client(user(superuser=True))
    pages = {
        "admin list": staff.get(reverse("admin:djtasks_taskrecord_changelist")),
        **{
            f"admin page of {i}": staff.get(reverse("admin:djtasks_taskrecord_change", args=[i]))
            for i in ids
        },
    }
    for where, reply in pages.items():
        assert reply.status_code == 200, where
        assert_no_secret(reply.content.decode(), where)
    assert "&#x27;***&#x27;" in pages[f"admin page of {failed.id}"].content.decode()
    for secret in SECRETS:  # the search cannot be used to guess them either
        found = staff.get(reverse("admin:djtasks_taskrecord_changelist"), {"q": secret})
        assert found.context["cl"].result_count == 0, secret

    # Retried from the admin: the copy hides them too.
    staff.post(
        reverse("admin:djtasks_taskrecord_changelist"),
        {"action": "retry_tasks", "_selected_action": [failed.id], "index": "0"},
    )
    copy = TaskRecord.objects.exclude(pk__in=ids).get(name="chaos.charge")
    page = staff.get(reverse("admin:djtasks_taskrecord_change", args=[copy.pk]))
    assert_no_secret(page.content.decode(), "the retried copy's page")

    # The HTTP API (a token acting as a superuser) and the status JSON.
    settings.DJTASKS_API_TOKENS = {"t" * 40: User.objects.filter(is_superuser=True)[0].username}
    api = Client(HTTP_AUTHORIZATION=f"Bearer {'t' * 40}")
    for i in ids:
        body = api.get(reverse("djtasks:api-task", args=[i])).json()
        assert body["args"] is None and body["kwargs"] is None and "argsrepr" in body
        assert_no_secret(json.dumps(body), f"the API's task {i}")
        for url in (AsyncResult(i).status_url(), reverse("djtasks:status", args=[i])):
            assert_no_secret(staff.get(url).content.decode(), f"the status JSON of {i}")
    assert_no_secret(api.get(reverse("djtasks:api-tasks")).content.decode(), "the API's list")
    assert_no_secret(w.log(), "the worker's DEBUG log")
    report(
        "sensitive arguments: 4 calls (sensitive=, argsrepr=), seen by the task; absent from "
        "the admin list, pages, search and retried copy, the API, the status JSON and a "
        "DEBUG worker log"
    )


@pytest.mark.django_db
def test_sensitive_is_checked_when_the_task_is_declared() -> None:
    from djtasks import task
    from djtasks.exceptions import ImproperlyConfiguredTask

    with pytest.raises(ImproperlyConfiguredTask, match="sensitive names 'pin', not an arg"):
        task(name="chaos.bad_sensitive", sensitive=("pin",))(lambda card: card)
    with pytest.raises(ImproperlyConfiguredTask, match="list of argument names"):
        task(name="chaos.bad_sensitive", sensitive="card")(lambda card: card)
    with pytest.raises(TypeError, match="argsrepr must be a string"):
        tasks.effect.apply_async((1,), argsrepr=["x"])
    many = tasks.charge.bulk_delay([(CARD, 1), (f"{CARD}0", 2)])
    shown = [TaskRecord.objects.get(pk=r.id).headers["argsrepr"] for r in many]
    assert shown == ["['***', 1]", "['***', 2]"]  # each call its own, masked
    assert TaskRecord.objects.count() == 2


# -- the status JSON --------------------------------------------------------------


@pytest.mark.django_db
def test_the_status_json_is_404_without_a_valid_signed_url_and_hides_results() -> None:
    result = tasks.charge.apply_async((CARD, 1), {"cvv": CVV})
    other = tasks.effect.delay(1)
    TaskRecord.objects.filter(pk=result.id).update(
        state=states.FAILURE,
        exc_type="builtins.ValueError",
        exc_message="declined",
        traceback="Traceback (most recent call last): ... ValueError: declined",
    )
    token = result.status_url().rstrip("/").rpartition("/")[2]
    forged = [
        result.id,
        token[:-2] + ("aa" if not token.endswith("aa") else "bb"),
        other.status_url().rstrip("/").rpartition("/")[2],
        "garbage",
    ]
    for who in (None, user(staff=False), user("view_taskrecord", staff=False)):
        c = client(who)
        for bad in forged:
            reply = c.get(reverse("djtasks:status", args=[bad]))
            if bad == forged[2]:  # another task's valid token shows that task only
                assert reply.json()["id"] == other.id
                continue
            assert reply.status_code == 404, (who, bad)
            assert c.get(reverse("djtasks:bulk-status"), {"id": [token, bad]}).status_code == 404
        body = c.get(result.status_url()).json()
        assert set(body) == {"id", "state", "ready", "progress"}, body
        assert_no_secret(json.dumps(body), "the status JSON")
        assert "declined" not in json.dumps(body)


# -- admin actions and controls: permissions -------------------------------------------


def _djtasks_admins() -> list[Any]:
    return [ma for model, ma in admin.site._registry.items() if model._meta.app_label == "djtasks"]


def _snapshot() -> dict[str, Any]:
    return {
        m.__name__: sorted(map(repr, m.objects.values()))
        for m in (TaskRecord, Worker, PeriodicTask, PausedQueue)
    }


def _rows() -> dict[str, str]:
    """One row of each djtasks model, to point actions and views at."""
    task = tasks.effect.delay(1)
    done = TaskRecord.objects.create(name="chaos.effect", payload="[[2], {}]", state="SUCCESS")
    from django.utils import timezone

    now = timezone.now()
    Worker.objects.create(
        name="w1@test", hostname="h", pid=1, concurrency=1, last_seen=now, started_at=now
    )
    schedule = PeriodicTask.objects.create(
        name="every-minute", task="chaos.effect", args=[1], every=1, period="minutes"
    )
    return {"task": task.id, "done": str(done.pk), "worker": "w1@test", "schedule": schedule.pk}


@pytest.mark.django_db
def test_every_admin_action_declares_permissions_and_view_only_staff_changes_nothing(
    settings: Any,
) -> None:
    rows = _rows()
    boss = user(superuser=True)
    request = type("R", (), {"user": boss, "GET": {}, "POST": {}})()
    actions: list[tuple[Any, str]] = []
    for model_admin in _djtasks_admins():
        for name, action in model_admin.get_actions(request).items():
            # Django 6.1 returns Action objects; 5.2 (func, name, description).
            func = getattr(action, "func", None) or action[0]
            perms = getattr(func, "allowed_permissions", None)
            assert perms, f"{model_admin}: action {name!r} declares no permissions"
            actions.append((model_admin, name))
    assert len(actions) >= 5

    viewer = user("view_taskrecord", "view_worker", "view_periodictask")
    c = client(viewer)
    before = _snapshot()
    for model_admin, name in actions:
        url = reverse(f"admin:djtasks_{model_admin.opts.model_name}_changelist")
        pk = {"taskrecord": rows["done"], "worker": rows["worker"]}.get(
            model_admin.opts.model_name, rows["schedule"]
        )
        c.post(url, {"action": name, "_selected_action": [pk], "index": "0", "post": "yes"})
    for name, target in (("revoke", rows["task"]), ("pause", "default"), ("shutdown", "w1@test")):
        url = reverse("admin:djtasks_taskrecord_control", args=[name, target])
        assert c.post(url).status_code == 403, name
    settings.DJTASKS_API_TOKENS = {"v" * 40: viewer.username}
    api = Client(HTTP_AUTHORIZATION=f"Bearer {'v' * 40}")
    for url in _api_writes(rows):
        assert api.post(url, "{}", content_type="application/json").status_code == 403, url
    assert _snapshot() == before
    report(
        f"admin permissions: {len(actions)} actions on {len(_djtasks_admins())} admins all "
        "declare permissions; a view-only staff user's POSTs to each, to the controls and to "
        "the API's writes changed nothing"
    )


def _api_writes(rows: dict[str, Any]) -> list[str]:
    return [
        reverse("djtasks:api-task-revoke", args=[rows["task"]]),
        reverse("djtasks:api-task-retry", args=[rows["done"]]),
        reverse("djtasks:api-task-apply", args=["chaos.effect"]),
        reverse("djtasks:api-queue-pause", args=["default"]),
        reverse("djtasks:api-queue-resume", args=["default"]),
        reverse("djtasks:api-worker-shutdown", args=[rows["worker"]]),
        reverse("djtasks:api-worker-pool-grow", args=[rows["worker"]]),
        reverse("djtasks:api-worker-pool-shrink", args=[rows["worker"]]),
    ]


# -- CSRF ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_state_changing_view_refuses_a_post_without_a_csrf_token() -> None:
    rows = _rows()
    boss = client(user(superuser=True), csrf=True)
    posts: list[tuple[str, dict[str, Any]]] = []
    for model_admin in _djtasks_admins():
        model = model_admin.opts.model_name
        pk = {"taskrecord": rows["done"], "worker": rows["worker"]}.get(model, rows["schedule"])
        changelist = reverse(f"admin:djtasks_{model}_changelist")
        request = type("R", (), {"user": User.objects.get(is_superuser=True), "GET": {}})()
        for name in model_admin.get_actions(request):
            posts.append((changelist, {"action": name, "_selected_action": [pk], "post": "yes"}))
        posts += [
            (reverse(f"admin:djtasks_{model}_add"), {}),
            (reverse(f"admin:djtasks_{model}_change", args=[pk]), {}),
            (reverse(f"admin:djtasks_{model}_delete", args=[pk]), {"post": "yes"}),
        ]
    from djtasks import controls

    for target, value in (("task", rows["task"]), ("queue", "default"), ("worker", "w1@test")):
        for control in controls.for_target(target):  # type: ignore[arg-type]
            posts.append(
                (reverse("admin:djtasks_taskrecord_control", args=[control.name, value]), {})
            )
    posts += [(url, {}) for url in _api_writes(rows)]
    before = _snapshot()
    for url, data in posts:
        reply = boss.post(url, data)
        assert reply.status_code == 403, (url, data, reply.status_code)
    assert _snapshot() == before
    report(f"CSRF: {len(posts)} state-changing POSTs without a token, all 403, nothing changed")


# -- pickle -------------------------------------------------------------------------


class _Marker:
    def __reduce__(self) -> Any:
        return (print, ("pickle ran",))


@pytest.mark.django_db
def test_pickle_is_refused_unless_accepted_and_signed(capsys: pytest.CaptureFixture[str]) -> None:
    evil = base64.b64encode(pickle.dumps([[_Marker()], {}])).decode()
    pickle_type = "application/x-python-serialize"
    with pytest.raises(ContentDisallowed):  # not accepted (the default)
        serialization.decode_arguments(pickle_type, evil, task_name="chaos.effect")
    with override_settings(DJTASKS_ACCEPT_CONTENT=["json", "pickle"], DJTASKS_SIGN_MESSAGES=True):
        with pytest.raises(serialization.BadSignature):  # accepted, but not signed
            serialization.decode_arguments(pickle_type, evil, task_name="chaos.effect")
        ct, signed = serialization.encode_arguments("chaos.effect", [1], {}, "pickle")
        assert serialization.decode_arguments(ct, signed, task_name="chaos.effect") == ([1], {})
    with override_settings(DJTASKS_ACCEPT_CONTENT=["json", "pickle"], DJTASKS_SIGN_MESSAGES=False):
        with pytest.raises(SystemCheckError, match=r"djtasks\.E204"):
            call_command("check")
    assert "pickle ran" not in capsys.readouterr().out
