"""The JSON API (djtasks.api): every route's status codes, permissions, CSRF and bad input.

Routes that need a worker's reply (worker detail's inspect, pool grow and
shrink, shutdown) are answered by a real worker in
tests/acceptance/test_api_workers.py; here they are checked up to the
point where a worker would be asked.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from djtasks import queue, serialization, states
from djtasks.api import pagination
from djtasks.ids import uuid7
from djtasks.models import PausedQueue, TaskRecord
from djtasks.models import Worker as WorkerRow
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

OPERATOR_TOKEN = "operator-" + "o" * 40
VIEWER_TOKEN = "viewer-" + "v" * 40
ADD = "/tasks/tasks/apply/tests.testapp.tasks.add/"


# -- people -----------------------------------------------------------------------------


def _user(name: str, staff: bool = True, perms: tuple[str, ...] = (), **kw: Any) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=staff, **kw)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=f"{codename}_taskrecord"))
    return user


@pytest.fixture
def people(db: None, settings: Any) -> dict[str, User]:
    found = {
        "member": _user("member", staff=False, perms=("view", "add", "change")),
        "staff": _user("staff"),
        "viewer": _user("viewer", perms=("view",)),
        "operator": _user("operator", perms=("view", "add", "change")),
        "root": User.objects.create_superuser("root", password="pw"),
        "machine": _user("machine", staff=False, perms=("view",)),
    }
    settings.DJTASKS_API_TOKENS = {OPERATOR_TOKEN: "operator", VIEWER_TOKEN: "machine"}
    return found


def session(user: User | None, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


def bearer(token: str, csrf: bool = True) -> Client:
    return Client(enforce_csrf_checks=csrf, HTTP_AUTHORIZATION=f"Bearer {token}")


def post(client: Client, url: str, body: Any = None, **extra: Any) -> Any:
    data = "" if body is None else (body if isinstance(body, str) else json.dumps(body))
    return client.post(url, data=data, content_type="application/json", **extra)


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    return body["error"]


# -- rows -------------------------------------------------------------------------------


def finish(
    task_id: str,
    state: str = states.SUCCESS,
    value: Any = 3,
    worker: str = "w1@test",
    now: dt.datetime | None = None,
) -> None:
    """Run a PENDING row through the queue as a worker would: claim, start, outcome."""
    now = now or timezone.now()
    row = TaskRecord.objects.get(pk=task_id)
    got = queue.claim(worker, [row.queue], 1000, now, 60)
    claimed = [c for c in got if c.id == task_id]
    queue.release(worker, [c for c in got if c.id != task_id])
    assert claimed, f"{task_id} was not claimable"
    queue.settle([], worker, claimed, now)
    ct, text = serialization.encode(value, "json") if state == states.SUCCESS else ("", None)
    queue.settle(
        [
            queue.Outcome(
                task_id,
                claimed[0].attempt,
                state,
                now,
                runtime=0.25,
                result=text,
                result_content_type=ct,
                exc_type="builtins.ValueError" if state == states.FAILURE else "",
                exc_message="boom" if state == states.FAILURE else "",
                traceback="Traceback (most recent call last):\nValueError: boom"
                if state == states.FAILURE
                else "",
            )
        ],
        worker,
        [],
        now,
    )


def online_worker(name: str = "w1@test", **fields: Any) -> WorkerRow:
    now = timezone.now()
    return WorkerRow.objects.create(
        **{
            "name": name,
            "hostname": "test",
            "pid": 4242,
            "queues": ["default"],
            "concurrency": 2,
            "pool": "prefork",
            "started_at": now,
            "last_seen": now,
            **fields,
        }
    )


# -- every route, every caller ------------------------------------------------------------

TASK = "01950000-0000-7000-8000-000000000001"
#: (method, url, permission, body) of every route; the task and worker need not exist.
ROUTES = [
    ("get", "/tasks/workers/", "view", None),
    ("get", "/tasks/workers/w9@test/?inspect=0", "view", None),
    ("post", "/tasks/workers/w9@test/pool/grow/", "change", {"n": 1}),
    ("post", "/tasks/workers/w9@test/pool/shrink/", "change", {"n": 1}),
    ("post", "/tasks/workers/w9@test/shutdown/", "change", {}),
    ("get", "/tasks/tasks/", "view", None),
    ("get", f"/tasks/tasks/{TASK}/", "view", None),
    ("get", f"/tasks/tasks/{TASK}/tree/", "view", None),
    ("post", ADD, "add", {"args": [1, 2]}),
    ("post", f"/tasks/tasks/{TASK}/revoke/", "change", {}),
    ("post", f"/tasks/tasks/{TASK}/retry/", "add", {}),
    ("get", "/tasks/queues/", "view", None),
    ("post", "/tasks/queues/q1/pause/", "change", {}),
    ("post", "/tasks/queues/q1/resume/", "change", {}),
    ("get", "/tasks/metrics", "view", None),
]


def call(client: Client, method: str, url: str, body: Any) -> Any:
    return client.get(url) if method == "get" else post(client, url, body)


def test_every_route_is_listed_here() -> None:
    from djtasks.api import urls

    names = {p.name for p in urls.urlpatterns}
    assert len(ROUTES) + 1 == len(names)  # + openapi.json, public


@pytest.mark.parametrize(("method", "url", "perm", "body"), ROUTES)
def test_anonymous_gets_401_with_a_challenge(
    people: Any, method: str, url: str, perm: str, body: Any
) -> None:
    response = call(session(None), method, url, body)
    assert "log in" in error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize(("method", "url", "perm", "body"), ROUTES)
def test_non_staff_sessions_get_403_whatever_their_permissions(
    people: Any, method: str, url: str, perm: str, body: Any
) -> None:
    assert "staff" in error(call(session(people["member"]), method, url, body), 403)


@pytest.mark.parametrize(("method", "url", "perm", "body"), ROUTES)
def test_staff_without_the_permission_get_403(
    people: Any, method: str, url: str, perm: str, body: Any
) -> None:
    message = error(call(session(people["staff"]), method, url, body), 403)
    assert f"djtasks.{perm}_taskrecord" in message
    if perm != "view":
        message = error(call(session(people["viewer"]), method, url, body), 403)
        assert f"djtasks.{perm}_taskrecord" in message


@pytest.mark.parametrize(("method", "url", "perm", "body"), ROUTES)
def test_permitted_callers_get_past_the_checks(
    people: Any, method: str, url: str, perm: str, body: Any
) -> None:
    callers = [session(people["operator"]), session(people["root"]), bearer(OPERATOR_TOKEN)]
    if perm == "view":
        callers.append(bearer(VIEWER_TOKEN))  # its user is not staff: tokens need no staff
    for client in callers:
        response = call(client, method, url, body)
        assert response.status_code not in (401, 403), response.content
        assert response.status_code < 500
        assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.parametrize(("method", "url", "perm", "body"), ROUTES)
def test_a_token_without_the_permission_gets_403(
    people: Any, method: str, url: str, perm: str, body: Any
) -> None:
    if perm != "view":
        assert perm in error(call(bearer(VIEWER_TOKEN), method, url, body), 403)


def test_bad_tokens_get_401(people: Any, settings: Any) -> None:
    for header in (f"Bearer {OPERATOR_TOKEN}x", "Bearer", "Basic dXNlcjpwdw==", OPERATOR_TOKEN):
        client = Client(HTTP_AUTHORIZATION=header)
        error(client.get("/tasks/queues/"), 401)
    # A bad token is not rescued by a staff session.
    client = session(people["root"])
    error(client.get("/tasks/queues/", HTTP_AUTHORIZATION="Bearer nope"), 401)
    # A token whose user is gone or inactive is no token.
    settings.DJTASKS_API_TOKENS = {OPERATOR_TOKEN: "ghost", VIEWER_TOKEN: "viewer"}
    error(bearer(OPERATOR_TOKEN).get("/tasks/queues/"), 401)
    people["viewer"].is_active = False
    people["viewer"].save()
    error(bearer(VIEWER_TOKEN).get("/tasks/queues/"), 401)


def test_no_tokens_configured_means_sessions_only(people: Any, settings: Any) -> None:
    settings.DJTASKS_API_TOKENS = {}
    error(bearer(OPERATOR_TOKEN).get("/tasks/queues/"), 401)
    assert session(people["viewer"]).get("/tasks/queues/").status_code == 200


def test_wrong_method_gets_405_with_allow(people: Any) -> None:
    client = session(people["root"])
    response = client.get(ADD)
    assert "POST" in error(response, 405)
    assert response["Allow"] == "POST"
    response = post(client, "/tasks/workers/", {})
    error(response, 405)
    assert response["Allow"] == "GET, HEAD"
    assert client.head("/tasks/queues/").status_code == 200


def test_openapi_json_is_public(db: None) -> None:
    response = Client().get("/tasks/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"] == "3.1.0"
    assert response.json()["servers"] == [{"url": "/tasks"}]


# -- CSRF --------------------------------------------------------------------------------


def test_sessions_need_the_csrf_token_for_unsafe_methods(people: Any) -> None:
    client = session(people["operator"], csrf=True)
    assert "CSRF" in error(post(client, ADD, {"args": [1, 2]}), 403)
    assert not TaskRecord.objects.exists()
    client.get("/admin/")  # sets the csrftoken cookie, as any admin page does
    token = client.cookies["csrftoken"].value
    response = post(client, ADD, {"args": [1, 2]}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
    # Reading needs no token.
    assert client.get("/tasks/tasks/").status_code == 200


def test_tokens_need_no_csrf_token(people: Any) -> None:
    response = post(bearer(OPERATOR_TOKEN, csrf=True), ADD, {"args": [1, 2]})
    assert response.status_code == 201, response.content


# -- tasks: list ---------------------------------------------------------------------------


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [t["id"] for t in response.json()["tasks"]]


def follow_pages(client: Client, url: str) -> list[str]:
    found: list[str] = []
    for _ in range(200):
        response = client.get(url)
        found += ids(response)
        if response.json()["next"] is None:
            return found
        url = response.json()["next"]
    raise AssertionError("too many pages")


def test_task_list_pages_newest_first_with_keyset_cursors(people: Any) -> None:
    # Newest first by id: UUIDv7, so by creation time to the millisecond.
    made = sorted(str(tasks.add.delay(i, i).id) for i in range(25))
    client = session(people["viewer"])
    response = client.get("/tasks/tasks/?limit=10")
    body = response.json()
    assert body["ordering"] == "id" and len(body["tasks"]) == 10
    assert body["next"].startswith("http://testserver/tasks/tasks/?")
    assert "limit=10" in body["next"] and body["next_cursor"] in body["next"]
    assert follow_pages(client, "/tasks/tasks/?limit=10") == made[::-1]
    first = body["tasks"][0]
    assert first["state"] == states.PENDING and first["name"] == "tests.testapp.tasks.add"
    assert first["worker"] is None and first["queue"] == "default"


def test_task_list_filters(people: Any) -> None:
    done = sorted(str(tasks.add.delay(1, 2).id) for _ in range(3))
    for task_id in done[:2]:
        finish(task_id)
    finish(done[2], states.FAILURE, worker="w2@test")
    echo = str(tasks.echo.delay("x").id)
    routed = str(tasks.routed.delay().id)
    client = session(people["viewer"])
    assert ids(client.get("/tasks/tasks/?state=SUCCESS")) == done[:2][::-1]
    assert client.get("/tasks/tasks/?state=SUCCESS").json()["ordering"] == "done"
    assert ids(client.get("/tasks/tasks/?state=FAILURE")) == [done[2]]
    assert ids(client.get("/tasks/tasks/?name=tests.testapp.tasks.echo")) == [echo]
    assert client.get("/tasks/tasks/?name=x").json()["ordering"] == "created"
    assert ids(client.get("/tasks/tasks/?queue=lowpri")) == [routed]
    assert ids(client.get("/tasks/tasks/?worker=w2@test")) == [done[2]]
    assert set(ids(client.get("/tasks/tasks/?state=PENDING"))) == {echo, routed}
    assert ids(client.get("/tasks/tasks/?state=SUCCESS&worker=w2@test")) == []
    future = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    assert ids(client.get("/tasks/tasks/", {"since": future})) == []
    assert len(ids(client.get("/tasks/tasks/", {"since": "0"}))) == 5
    failure = client.get("/tasks/tasks/?state=FAILURE").json()["tasks"][0]
    assert failure["exc_type"] == "builtins.ValueError" and failure["runtime"] == 0.25
    assert failure["worker"] == "w2@test" and failure["done_at"] is not None


def test_filters_off_the_index_are_checked_on_a_bounded_scan(people: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(pagination, "SCAN_BUDGET", 4)
    for i in range(14):
        tasks.add.delay(i, 0) if i % 3 else tasks.routed.delay()
    lowpri = sorted(
        str(pk) for pk in TaskRecord.objects.filter(queue="lowpri").values_list("pk", flat=True)
    )
    client = session(people["viewer"])
    first = client.get("/tasks/tasks/?queue=lowpri&limit=100").json()
    assert len(first["tasks"]) < len(lowpri) and first["scanned_to"] is not None
    assert follow_pages(client, "/tasks/tasks/?queue=lowpri&limit=100") == lowpri[::-1]
    assert follow_pages(client, "/tasks/tasks/?queue=lowpri&limit=1") == lowpri[::-1]
    assert follow_pages(client, "/tasks/tasks/?queue=nowhere") == []


def test_pages_by_finish_time_continue_across_equal_timestamps(
    people: Any, monkeypatch: Any
) -> None:
    made = sorted(str(tasks.add.delay(i, 0).id) for i in range(7))
    now = timezone.now()
    for task_id in made:
        finish(task_id, now=now)  # one timestamp for all: the id settles the order
    client = session(people["viewer"])
    assert follow_pages(client, "/tasks/tasks/?state=SUCCESS&limit=2") == made[::-1]
    monkeypatch.setattr(pagination, "SCAN_BUDGET", 3)
    assert follow_pages(client, "/tasks/tasks/?state=SUCCESS&queue=default&limit=2") == made[::-1]
    by_creation = [
        str(pk)
        for pk in TaskRecord.objects.order_by("-created_at", "-id").values_list("pk", flat=True)
    ]
    assert (
        follow_pages(client, "/tasks/tasks/?name=tests.testapp.tasks.add&worker=w1@test&limit=3")
        == by_creation
    )


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("state=DONE", "state must be one of"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "ISO 8601"),
        ("since=2025-01-01T00:00:00", "time zone"),
        ("since=1e99", "out of range"),
        ("since=nan", "out of range"),
        ("cursor=!!!", "cursor"),
        ("cursor=bm90IGpzb24", "cursor"),
        ("stat=FAILURE", "unknown query parameter"),
        ("state=SUCCESS&state=FAILURE", "once"),
        ("name=", "1 to 255"),
    ],
)
def test_task_list_bad_queries_get_400(people: Any, query: str, says: str) -> None:
    assert says in error(session(people["viewer"]).get(f"/tasks/tasks/?{query}"), 400)


def test_a_cursor_only_works_with_the_filters_that_made_it(people: Any) -> None:
    for i in range(3):
        finish(str(tasks.add.delay(i, 0).id))
    client = session(people["viewer"])
    cursor = client.get("/tasks/tasks/?limit=1").json()["next_cursor"]
    assert "other filters" in error(client.get(f"/tasks/tasks/?state=SUCCESS&cursor={cursor}"), 400)


# -- tasks: one, its tree -------------------------------------------------------------------


def test_task_detail_shows_results_to_staff_only(people: Any) -> None:
    ok, bad = str(tasks.add.delay(1, 2).id), str(tasks.add.delay(3, 4).id)
    finish(ok, value=3)
    finish(bad, states.FAILURE)
    staff = session(people["viewer"]).get(f"/tasks/tasks/{ok}/").json()
    assert staff["result"] == 3 and staff["args"] == [1, 2] and staff["kwargs"] == {}
    assert staff["state"] == states.SUCCESS and staff["ready"] is True
    assert staff["attempt"] == 1 and staff["content_type"] == "application/json"
    failed = session(people["viewer"]).get(f"/tasks/tasks/{bad}/").json()
    assert failed["error"] == {"type": "builtins.ValueError", "message": "boom"}
    assert "ValueError: boom" in failed["traceback"]
    # The machine token's user is not staff: it sees the task, not what it returned.
    machine = bearer(VIEWER_TOKEN).get(f"/tasks/tasks/{ok}/").json()
    assert machine["args"] == [1, 2] and "result" not in machine
    assert "traceback" not in bearer(VIEWER_TOKEN).get(f"/tasks/tasks/{bad}/").json()


def test_task_detail_errors(people: Any) -> None:
    client = session(people["viewer"])
    assert "not a task id" in error(client.get("/tasks/tasks/nope/"), 400)
    assert "no task" in error(client.get(f"/tasks/tasks/{uuid7()}/"), 404)
    assert "no task" in error(client.get(f"/tasks/tasks/{uuid7()}/tree/"), 404)


def test_task_tree_follows_parents_and_groups(people: Any) -> None:
    root = tasks.add.delay(1, 1)
    unrelated = tasks.add.delay(2, 2)
    group_id = uuid7()
    members = []
    for i in range(3):
        message = tasks.add.build_message(
            (i, i), parent_id=root.id, root_id=root.id, group_id=group_id
        )
        queue.enqueue([message])
        members.append(str(message.id))
    grandchild = tasks.add.build_message((9, 9), parent_id=members[0], root_id=root.id)
    queue.enqueue([grandchild])
    tree = session(people["viewer"]).get(f"/tasks/tasks/{grandchild.id}/tree/").json()
    assert tree["root_id"] == str(root.id) and tree["count"] == 5 and not tree["truncated"]
    (top,) = tree["roots"]
    assert top["id"] == str(root.id)
    assert [c["id"] for c in top["children"]] == sorted(members)
    (parent,) = [c for c in top["children"] if c["id"] == members[0]]
    assert parent["children"][0]["id"] == str(grandchild.id)
    assert all(c["group_id"] == str(group_id) for c in top["children"])
    # A group called from outside a task has no parent: its members are the roots.
    loose_group = uuid7()
    loose = [tasks.add.build_message((i, 0), group_id=loose_group) for i in range(2)]
    queue.enqueue(loose)
    tree = session(people["viewer"]).get(f"/tasks/tasks/{loose[1].id}/tree/").json()
    assert sorted(r["id"] for r in tree["roots"]) == sorted(str(m.id) for m in loose)
    assert str(unrelated.id) not in json.dumps(tree)


# -- tasks: apply, revoke, retry --------------------------------------------------------------


def test_apply_enqueues_a_registered_task(people: Any) -> None:
    client = session(people["operator"])
    response = post(
        client,
        ADD,
        {
            "args": [2],
            "kwargs": {"y": 5},
            "options": {"queue": "hipri", "priority": 7, "countdown": 60},
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    row = TaskRecord.objects.get(pk=body["id"])
    assert (row.name, row.queue, row.priority) == ("tests.testapp.tasks.add", "hipri", 7)
    assert row.eta > timezone.now() + dt.timedelta(seconds=50)
    assert serialization.decode_arguments(row.content_type, row.payload) == ([2], {"y": 5})
    assert response["Location"] == f"/tasks/tasks/{body['id']}/"
    assert body["url"].endswith(response["Location"]) and not body["duplicate"]
    assert "/tasks/status/" in body["status_url"]
    eta = "2030-01-01T00:00:00+00:00"
    body = post(client, ADD, {"args": [1, 1], "options": {"eta": eta, "expires": 7200}}).json()
    assert TaskRecord.objects.get(pk=body["id"]).eta.isoformat() == eta


def test_apply_with_a_held_unique_key_returns_the_holder(people: Any) -> None:
    client = session(people["operator"])
    options = {"options": {"unique_key": "report-42"}, "args": [1, 2]}
    first = post(client, ADD, options)
    second = post(client, ADD, options)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["id"] == first.json()["id"] and second.json()["duplicate"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ({"args": {"x": 1}}, "args must be a JSON array"),
        ({"kwargs": [1]}, "kwargs must be a JSON object"),
        ({"options": []}, "options must be a JSON object"),
        ({"arguments": [1]}, "unknown field"),
        ({"options": {"serializer": "pickle"}}, "unknown option"),
        ({"args": [1, 2], "options": {"priority": 1000}}, "priority"),
        ({"args": [1, 2], "options": {"eta": "2030-01-01T00:00:00"}}, "time zone"),
        ({"args": [1, 2], "options": {"countdown": "soon"}}, "countdown"),
        ({"args": [1, 2], "options": {"task_id": "nope"}}, "not a task id"),
    ],
)
def test_apply_bad_input_gets_400(people: Any, body: Any, says: str) -> None:
    assert says in error(post(session(people["operator"]), ADD, body), 400)
    assert not TaskRecord.objects.exists()


def test_apply_an_unknown_task_gets_400(people: Any) -> None:
    message = error(
        post(session(people["operator"]), "/tasks/tasks/apply/no.such.task/", {"args": []}), 400
    )
    assert "unknown task 'no.such.task'" in message


def test_revoke(people: Any) -> None:
    client = session(people["operator"])
    waiting = str(tasks.add.delay(1, 2).id)
    body = post(client, f"/tasks/tasks/{waiting}/revoke/", {}).json()
    assert body == {
        "id": waiting,
        "outcome": "revoked",
        "worker": None,
        "message": "revoked: it had not started and will not run",
    }
    row = TaskRecord.objects.get(pk=waiting)
    assert row.state == states.REVOKED and "through the API by operator" in row.exc_message
    assert "already finished" in error(post(client, f"/tasks/tasks/{waiting}/revoke/"), 409)
    running = str(tasks.add.delay(1, 2).id)
    now = timezone.now()
    claimed = queue.claim("w1@test", ["default"], 1, now, 60)
    queue.settle([], "w1@test", claimed, now)
    assert "terminate" in error(post(client, f"/tasks/tasks/{running}/revoke/"), 409)
    assert "no task" in error(post(client, f"/tasks/tasks/{uuid7()}/revoke/"), 404)
    assert "terminate must be" in error(
        post(client, f"/tasks/tasks/{running}/revoke/", {"terminate": "yes"}), 400
    )
    assert "timeout" in error(post(client, f"/tasks/tasks/{running}/revoke/", {"timeout": 99}), 400)
    assert "not a task id" in error(post(client, "/tasks/tasks/123/revoke/"), 400)


def test_retry_enqueues_the_admins_copy(people: Any) -> None:
    client = session(people["operator"])
    original = str(tasks.add.delay(4, 5).id)
    assert "only a finished task" in error(post(client, f"/tasks/tasks/{original}/retry/"), 409)
    finish(original, states.FAILURE)
    response = post(client, f"/tasks/tasks/{original}/retry/")
    assert response.status_code == 201, response.content
    body = response.json()
    copy = TaskRecord.objects.get(pk=body["id"])
    assert body["retry_of"] == original and copy.headers["retry_of"] == original
    assert (
        copy.state == states.PENDING and copy.payload == TaskRecord.objects.get(pk=original).payload
    )
    assert response["Location"] == f"/tasks/tasks/{copy.id}/"
    assert "no task" in error(post(client, f"/tasks/tasks/{uuid7()}/retry/"), 404)
    assert "unknown field" in error(
        post(client, f"/tasks/tasks/{original}/retry/", {"now": True}), 400
    )


# -- queues ------------------------------------------------------------------------------------


def test_queues_show_depth_age_and_paused(people: Any) -> None:
    old = tasks.add.apply_async((1, 1))
    TaskRecord.objects.filter(pk=old.id).update(eta=timezone.now() - dt.timedelta(minutes=5))
    tasks.add.delay(1, 1)
    tasks.add.apply_async((1, 1), countdown=600)
    tasks.routed.delay()
    finish(str(tasks.add.delay(2, 2).id))
    client = session(people["operator"])
    body = post(client, "/tasks/queues/lowpri/pause/").json()
    assert body["queue"] == "lowpri" and body["paused"] and body["changed"]
    assert body["replies"] == {} and body["missing"] == []
    assert not post(client, "/tasks/queues/lowpri/pause/").json()["changed"]
    assert PausedQueue.objects.get(name="lowpri").paused_by == "api:operator"
    post(client, "/tasks/queues/empty/pause/")
    queues = {q["name"]: q for q in client.get("/tasks/queues/").json()["queues"]}
    assert queues["default"]["depth"] == 2 and queues["default"]["scheduled"] == 1
    assert 290 < queues["default"]["oldest_waiting_age"] < 400
    assert not queues["default"]["paused"] and queues["default"]["paused_at"] is None
    assert queues["lowpri"]["depth"] == 1 and queues["lowpri"]["paused"]
    assert queues["lowpri"]["paused_by"] == "api:operator"
    assert queues["empty"] == {
        **queues["empty"],
        "depth": 0,
        "paused": True,
        "oldest_waiting_age": None,
    }
    resumed = post(client, "/tasks/queues/lowpri/resume/").json()
    assert resumed["changed"] and not resumed["paused"]
    assert not PausedQueue.objects.filter(name="lowpri").exists()
    assert not post(client, "/tasks/queues/lowpri/resume/").json()["changed"]


def test_queue_bad_input(people: Any) -> None:
    client = session(people["operator"])
    assert "queue name" in error(post(client, f"/tasks/queues/{'q' * 101}/pause/"), 400)
    assert "timeout" in error(post(client, "/tasks/queues/q/pause/", {"timeout": -1}), 400)
    assert "not valid JSON" in error(post(client, "/tasks/queues/q/resume/", "{"), 400)
    assert "unknown query" in error(client.get("/tasks/queues/?depth=1"), 400)


# -- workers -----------------------------------------------------------------------------------


def test_workers_list_and_detail(people: Any) -> None:
    online_worker("w1@test")
    online_worker(
        "w0@test",
        last_seen=timezone.now() - dt.timedelta(hours=1),
        stopped_at=timezone.now() - dt.timedelta(hours=1),
    )
    online_worker(
        "ancient@test",
        started_at=timezone.now() - dt.timedelta(days=9),
        last_seen=timezone.now() - dt.timedelta(days=9),
        stopped_at=timezone.now() - dt.timedelta(days=9),
    )
    tasks.add.delay(1, 2)
    queue.claim("w1@test", ["default"], 1, timezone.now(), 60)
    client = session(people["viewer"])
    listed = client.get("/tasks/workers/").json()["workers"]
    assert [w["name"] for w in listed] == ["w1@test", "w0@test"]
    w1 = listed[0]
    assert w1["online"] and w1["state"] == "online" and w1["running"] == 1
    assert w1["load"] == 0.5 and w1["concurrency"] == 2 and w1["queues"] == ["default"]
    assert listed[1]["state"] == "stopped" and not listed[1]["online"]
    detail = client.get("/tasks/workers/w1@test/?inspect=0").json()
    assert detail["name"] == "w1@test" and detail["inspect"] is None
    # Stopped long ago: not listed, but still found by name.
    assert client.get("/tasks/workers/ancient@test/").json()["state"] == "stopped"
    assert client.get("/tasks/workers/ancient@test/").json()["inspect"] is None
    assert "no worker" in error(client.get("/tasks/workers/nobody/"), 404)
    assert "inspect must be" in error(client.get("/tasks/workers/w1@test/?inspect=yes"), 400)
    assert "timeout" in error(client.get("/tasks/workers/w1@test/?timeout=11"), 400)


@pytest.mark.parametrize("command", ["pool/grow", "pool/shrink", "shutdown"])
def test_worker_commands_refuse_before_asking_anyone(people: Any, command: str) -> None:
    client = session(people["operator"])
    url = f"/tasks/workers/w1@test/{command}/"
    assert "no worker" in error(post(client, url), 404)
    online_worker("w1@test", stopped_at=timezone.now())
    assert "stopped" in error(post(client, url), 409)
    WorkerRow.objects.filter(pk="w1@test").update(
        stopped_at=None, last_seen=timezone.now() - dt.timedelta(hours=1)
    )
    assert "offline" in error(post(client, url), 409)
    WorkerRow.objects.filter(pk="w1@test").update(last_seen=timezone.now())
    assert "timeout" in error(post(client, url, {"timeout": 0}), 400)
    assert "unknown field" in error(post(client, url, {"force": True}), 400)
    if command != "shutdown":
        for n in (0, -1, "2", 1.5, True, 1001):
            assert "n must be" in error(post(client, url, {"n": n}), 400)


def test_reverse_names_are_in_the_djtasks_namespace() -> None:
    assert reverse("djtasks:api-tasks") == "/tasks/tasks/"
    assert reverse("djtasks:api-metrics") == "/tasks/metrics"
    assert reverse("djtasks:api-task", args=[TASK]) == f"/tasks/tasks/{TASK}/"
