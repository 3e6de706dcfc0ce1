"""The task admin: list, filters, search, detail page, actions and permissions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from djtasks import controls, serialization, states
from djtasks.admin.task_detail import RETRY_OF_HEADER
from djtasks.admin.task_list import ApproximateCount, TaskPaginator
from djtasks.dashboard import uuid7_floor
from djtasks.ids import uuid7
from djtasks.models import TaskRecord, Worker

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:djtasks_taskrecord_changelist"


def row(**fields: Any) -> TaskRecord:
    """A task row as the queue would have left it (tests only)."""
    now = fields.pop("now", None) or timezone.now()
    fields.setdefault("id", uuid7())
    fields.setdefault("name", "tests.testapp.tasks.echo")
    fields.setdefault("payload", serialization.encode([[1, "two"], {"size": 3}], "json")[1])
    fields.setdefault("created_at", now)
    fields.setdefault("eta", now)
    return TaskRecord.objects.create(**fields)


def user_with(*codenames: str, staff: bool = True, superuser: bool = False) -> User:
    user = User.objects.create_user(
        f"u{uuid.uuid4().hex[:8]}", password="pw", is_staff=staff, is_superuser=superuser
    )
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="djtasks", codename__in=codenames)
    )
    return User.objects.get(pk=user.pk)  # fresh permission cache


def client_for(user: User | None, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def admin_client_(db: None) -> Client:
    return client_for(user_with(superuser=True))


def changelist(client: Client, **params: Any) -> Any:
    return client.get(reverse(CHANGELIST), params)


def shown_ids(reply: Any) -> list[str]:
    return [str(obj.pk) for obj in reply.context["cl"].result_list]


def act(
    client: Client, action: str, ids: list[Any], across: bool = False, query: str = "", **extra: Any
) -> Any:
    data = {
        "action": action,
        "_selected_action": [str(i) for i in ids],
        "select_across": "1" if across else "0",
        "index": "0",
        **extra,
    }
    return client.post(reverse(CHANGELIST) + query, data)


# -- access ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who, status",
    [
        ("anonymous", 302),
        ("member", 302),
        ("staff-no-perm", 403),
        ("staff-view", 200),
        ("staff-change", 200),
        ("superuser", 200),
    ],
)
def test_changelist_access(who: str, status: int) -> None:
    user = {
        "anonymous": lambda: None,
        "member": lambda: user_with("view_taskrecord", staff=False),
        "staff-no-perm": lambda: user_with(),
        "staff-view": lambda: user_with("view_taskrecord"),
        "staff-change": lambda: user_with("change_taskrecord"),
        "superuser": lambda: user_with(superuser=True),
    }[who]()
    row()
    reply = changelist(client_for(user))
    assert reply.status_code == status
    if status == 302:
        assert "/admin/login/" in reply["Location"]


@pytest.mark.parametrize(
    "codenames, expected",
    [
        (("view_taskrecord",), set()),
        (("view_taskrecord", "change_taskrecord"), {"revoke_tasks"}),
        (("view_taskrecord", "add_taskrecord"), {"retry_tasks"}),
        (("view_taskrecord", "delete_taskrecord"), {"delete_selected"}),
    ],
)
def test_actions_follow_permissions(codenames: tuple[str, ...], expected: set[str]) -> None:
    row()
    reply = changelist(client_for(user_with(*codenames)))
    form = reply.context["action_form"]  # None when no action is allowed
    choices = {name for name, _ in form.fields["action"].choices if name} if form else set()
    assert choices == expected


def test_rows_are_read_only(admin_client_: Client) -> None:
    task = row()
    assert admin_client_.get(reverse("admin:djtasks_taskrecord_add")).status_code == 403
    change = reverse("admin:djtasks_taskrecord_change", args=[task.id])
    reply = admin_client_.post(change, {"name": "changed", "state": "SUCCESS"})
    assert reply.status_code in (403, 405) or "changed" not in reply.content.decode()
    task.refresh_from_db()
    assert task.name == "tests.testapp.tasks.echo" and task.state == states.PENDING


# -- the list -------------------------------------------------------------------------


def test_list_columns(admin_client_: Client) -> None:
    task = row(
        state=states.SUCCESS,
        runtime=0.0123,
        worker="w1@host",
        retries=2,
        received_at=timezone.now(),
        started_at=timezone.now(),
        done_at=timezone.now(),
        priority=7,
        queue="hipri",
    )
    progress = row(state=states.STARTED, custom_state="PROGRESS")
    html = changelist(admin_client_).content.decode()
    assert 'class="djtasks-state djtasks-state-success">SUCCESS<' in html
    assert 'djtasks-state-custom">PROGRESS<' in html
    assert "1, &#x27;two&#x27;, size=3" in html  # decoded arguments, not the raw payload
    assert "12 ms" in html and "w1@host" in html and "hipri" in html
    assert str(task.id) in html and str(progress.id) in html
    assert "Dashboard" in html


def test_newest_first_and_no_full_count(admin_client_: Client) -> None:
    ids = sorted((row().id for _ in range(5)), reverse=True)  # UUIDv7: enqueue order
    with CaptureQueriesContext(connection) as ctx:
        reply = changelist(admin_client_)
    assert shown_ids(reply) == [str(i) for i in ids]
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts == []  # the count is the length of one bounded id read
    assert "5 tasks" in reply.content.decode()


def test_count_is_capped(admin_client_: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskPaginator, "cap", 4)
    for _ in range(7):
        row(queue="busy")
    reply = changelist(admin_client_, queue="busy")
    count = reply.context["cl"].result_count
    assert isinstance(count, ApproximateCount) and int(count) == 5 and str(count) == "4+"
    assert "4+ tasks" in reply.content.decode()


def test_pages_are_slices_of_one_id_read(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("djtasks.admin.task_admin.TaskRecordAdmin.list_per_page", 2)
    ids = [str(i) for i in sorted((row().id for _ in range(5)), reverse=True)]
    assert shown_ids(changelist(admin_client_, p=2)) == ids[2:4]
    assert shown_ids(changelist(admin_client_, p=3)) == ids[4:]
    reply = changelist(admin_client_, p=99)
    assert reply.status_code == 302 and "e=1" in reply["Location"]


# -- filters --------------------------------------------------------------------------


def test_state_filter(admin_client_: Client) -> None:
    done = row(state=states.SUCCESS)
    waiting = row(state=states.PENDING)
    running = row(state=states.STARTED)
    assert shown_ids(changelist(admin_client_, state="SUCCESS")) == [str(done.id)]
    assert set(shown_ids(changelist(admin_client_, state="unfinished"))) == {
        str(waiting.id),
        str(running.id),
    }


def test_queue_filter_choices_come_from_cheap_sources(
    admin_client_: Client, temp_task: Any, settings: Any
) -> None:
    settings.DJTASKS_TASK_ROUTES = {"some.task": {"queue": "routed"}}
    temp_task(lambda: None, queue="declared")
    Worker.objects.create(
        name="w@h",
        hostname="h",
        pid=1,
        queues=["from-worker"],
        concurrency=1,
        pool="solo",
        started_at=timezone.now(),
        last_seen=timezone.now(),
    )
    row(queue="waiting-queue")
    row(queue="history-only", state=states.SUCCESS)
    reply = changelist(admin_client_)
    spec = next(f for f in reply.context["cl"].filter_specs if f.parameter_name == "queue")
    choices = {value for value, _ in spec.lookup_choices}
    assert {"default", "routed", "declared", "from-worker", "waiting-queue"} <= choices
    assert "history-only" not in choices  # would need a scan of finished rows
    assert shown_ids(changelist(admin_client_, queue="history-only")) != []


def test_name_and_worker_filters(admin_client_: Client) -> None:
    a = row(name="tests.testapp.tasks.add", worker="w1")
    row(name="tests.testapp.tasks.echo", worker="w2")
    assert shown_ids(changelist(admin_client_, name="tests.testapp.tasks.add")) == [str(a.id)]
    assert shown_ids(changelist(admin_client_, worker="w1")) == [str(a.id)]
    reply = changelist(admin_client_)
    spec = next(f for f in reply.context["cl"].filter_specs if f.parameter_name == "name")
    assert ("tests.testapp.tasks.add", "tests.testapp.tasks.add") in spec.lookup_choices


def test_time_filters(admin_client_: Client) -> None:
    now = timezone.now()
    old = row(
        now=now - dt.timedelta(days=9), state=states.SUCCESS, done_at=now - dt.timedelta(days=9)
    )
    recent = row(
        now=now - dt.timedelta(minutes=5),
        state=states.FAILURE,
        done_at=now - dt.timedelta(minutes=4),
    )
    pending = row(now=now - dt.timedelta(minutes=2))
    assert set(shown_ids(changelist(admin_client_, created_at="15m"))) == {
        str(recent.id),
        str(pending.id),
    }
    assert shown_ids(changelist(admin_client_, created_at="older")) == [str(old.id)]
    assert shown_ids(changelist(admin_client_, done_at="1h")) == [str(recent.id)]
    assert shown_ids(changelist(admin_client_, done_at="older")) == [str(old.id)]
    assert len(shown_ids(changelist(admin_client_, done_at="7d"))) == 1


def test_filters_combine(admin_client_: Client) -> None:
    hit = row(queue="q1", state=states.FAILURE, name="tests.testapp.tasks.add")
    row(queue="q1", state=states.SUCCESS, name="tests.testapp.tasks.add")
    row(queue="q2", state=states.FAILURE, name="tests.testapp.tasks.add")
    assert shown_ids(
        changelist(admin_client_, queue="q1", state="FAILURE", name="tests.testapp.tasks.add")
    ) == [str(hit.id)]


# -- search ---------------------------------------------------------------------------


def test_search_by_id_name_and_argument_text(admin_client_: Client) -> None:
    a = row(
        name="shop.tasks.charge_card",
        payload=serialization.encode([["cust_42"], {"amount": 5}], "json")[1],
    )
    b = row(
        name="shop.tasks.send_email",
        payload=serialization.encode([["alice@example.com"], {}], "json")[1],
    )
    assert shown_ids(changelist(admin_client_, q=str(a.id))) == [str(a.id)]
    assert shown_ids(changelist(admin_client_, q=str(a.id).upper())) == [str(a.id)]
    assert shown_ids(changelist(admin_client_, q="send_EMAIL")) == [str(b.id)]
    assert shown_ids(changelist(admin_client_, q="alice@example")) == [str(b.id)]
    assert shown_ids(changelist(admin_client_, q="charge cust_42")) == [str(a.id)]
    assert shown_ids(changelist(admin_client_, q='"cust_42"')) == [str(a.id)]
    assert shown_ids(changelist(admin_client_, q="nothing-like-this")) == []


# -- the detail page ------------------------------------------------------------------


def test_detail_page_shows_everything_decoded(admin_client_: Client) -> None:
    now = timezone.now()
    parent = row(state=states.SUCCESS, done_at=now)
    task = row(
        state=states.FAILURE,
        queue="hipri",
        priority=5,
        worker="w9@host",
        retries=1,
        attempt=2,
        payload=serialization.encode([[1, {"deep": [1, 2]}], {"when": now}], "json")[1],
        headers={"trace": "abc", RETRY_OF_HEADER: str(parent.id)},
        exc_type="builtins.ValueError",
        exc_message="bad input",
        traceback="Traceback (most recent call last):\n  File x\nValueError: bad input",
        received_at=now + dt.timedelta(milliseconds=5),
        started_at=now + dt.timedelta(milliseconds=8),
        done_at=now + dt.timedelta(seconds=2),
        runtime=1.99,
        now=now,
        parent_id=parent.id,
        root_id=parent.id,
    )
    child = row(parent_id=task.id, root_id=parent.id, now=now + dt.timedelta(seconds=1))
    reply = admin_client_.get(reverse("admin:djtasks_taskrecord_change", args=[task.id]))
    assert reply.status_code == 200
    html = reply.content.decode()
    assert "[1, {&#x27;deep&#x27;: [1, 2]}]" in html  # pretty-printed, decoded args
    assert "datetime.datetime(" in html  # kwargs decoded to Python values
    assert "ValueError: bad input" in html and "builtins.ValueError" in html
    assert "&quot;trace&quot;: &quot;abc&quot;" in html  # headers as JSON
    for label in ("Enqueued", "Received", "Started", "Failure"):
        assert label in html
    assert "by w9@host" in html and "ran 2.0 s" in html
    parent_url = reverse("admin:djtasks_taskrecord_change", args=[parent.id])
    assert f'href="{parent_url}"' in html  # parent, and "copy of" from the retry header
    assert reverse("admin:djtasks_taskrecord_change", args=[child.id]) in html
    assert "Retry (enqueue a copy)" in html
    assert "Revoke" not in html  # not offered for a finished task


def test_detail_page_result_progress_and_group(admin_client_: Client) -> None:
    group = uuid.uuid4()
    ok = row(
        state=states.SUCCESS,
        result=serialization.encode({"n": 1}, "json")[1],
        result_content_type="application/json",
        group_id=group,
    )
    sibling = row(group_id=group)
    html = admin_client_.get(
        reverse("admin:djtasks_taskrecord_change", args=[ok.id])
    ).content.decode()
    assert "{&#x27;n&#x27;: 1}" in html
    assert "Group members" in html and str(sibling.id) in html
    running = row(
        state=states.STARTED,
        custom_state="PROGRESS",
        result=serialization.encode({"current": 2, "total": 5}, "json")[1],
        result_content_type="application/json",
    )
    html = admin_client_.get(
        reverse("admin:djtasks_taskrecord_change", args=[running.id])
    ).content.decode()
    assert ">PROGRESS<" in html and "Progress" in html and "&#x27;current&#x27;: 2" in html
    lost = row(
        state=states.FAILURE,
        exc_type="djtasks.exceptions.WorkerLostError",
        result=serialization.encode({"current": 4, "total": 5}, "json")[1],
        result_content_type="application/json",
    )
    html = admin_client_.get(
        reverse("admin:djtasks_taskrecord_change", args=[lost.id])
    ).content.decode()
    assert "Last reported progress" in html and "&#x27;current&#x27;: 4" in html


def test_detail_page_of_an_undecodable_payload(admin_client_: Client) -> None:
    task = row(content_type="application/x-python-serialize", payload="gASV-not-json")
    html = admin_client_.get(
        reverse("admin:djtasks_taskrecord_change", args=[task.id])
    ).content.decode()
    assert "not accepted" in html and "gASV-not-json" in html


def test_detail_page_offers_revoke_by_permission() -> None:
    task = row(state=states.PENDING)
    url = reverse("admin:djtasks_taskrecord_change", args=[task.id])
    assert "Revoke" in client_for(user_with("change_taskrecord")).get(url).content.decode()
    assert "Revoke" not in client_for(user_with("view_taskrecord")).get(url).content.decode()


def test_detail_page_access_and_missing_rows() -> None:
    task = row()
    url = reverse("admin:djtasks_taskrecord_change", args=[task.id])
    assert client_for(None).get(url).status_code == 302
    assert client_for(user_with()).get(url).status_code == 403
    viewer = client_for(user_with("view_taskrecord"))
    assert viewer.get(url).status_code == 200
    missing = viewer.get(reverse("admin:djtasks_taskrecord_change", args=[uuid7()]))
    assert missing.status_code == 302
    bad = viewer.get(reverse("admin:djtasks_taskrecord_change", args=["not-a-uuid"]))
    assert bad.status_code == 302


def test_children_are_found_through_an_id_range_only(admin_client_: Client) -> None:
    task = row(state=states.SUCCESS, done_at=timezone.now())
    outside = row(
        parent_id=task.id,
        id=uuid.UUID(int=uuid7_floor(task.created_at - dt.timedelta(days=2)).int + 1),
    )
    html = admin_client_.get(
        reverse("admin:djtasks_taskrecord_change", args=[task.id])
    ).content.decode()
    assert str(outside.id) not in html  # documented: children with ids of their own


# -- retry ----------------------------------------------------------------------------


def test_retry_enqueues_copies_linked_to_the_originals(admin_client_: Client) -> None:
    failed = row(
        state=states.FAILURE,
        queue="hipri",
        priority=9,
        headers={"k": "v"},
        exc_type="builtins.ValueError",
        done_at=timezone.now(),
        acks_late=True,
    )
    running = row(state=states.STARTED)
    reply = act(admin_client_, "retry_tasks", [failed.id, running.id])
    assert reply.status_code == 302
    copies = list(TaskRecord.objects.filter(**{f"headers__{RETRY_OF_HEADER}": str(failed.id)}))
    assert len(copies) == 1
    copy = copies[0]
    assert copy.id != failed.id and copy.state == states.PENDING
    assert (copy.name, copy.queue, copy.priority, copy.payload, copy.acks_late) == (
        failed.name,
        "hipri",
        9,
        failed.payload,
        True,
    )
    assert copy.headers == {"k": "v", RETRY_OF_HEADER: str(failed.id)}
    failed.refresh_from_db()
    assert failed.state == states.FAILURE  # the original is history, untouched
    assert TaskRecord.objects.count() == 3  # the running one was not copied
    messages = [str(m) for m in reply.wsgi_request._messages]
    assert any("1 unfinished task(s) were left alone" in m for m in messages)


def test_retry_copies_run_alone_outside_the_original_workflow(admin_client_: Client) -> None:
    chain_rest = [{"task": "tests.testapp.tasks.add", "args": [1], "kwargs": {}, "options": {}}]
    member = row(
        state=states.FAILURE,
        group_id=uuid.uuid4(),
        parent_id=uuid7(),
        headers={
            "chain": chain_rest,
            "chord": str(uuid7()),
            "group_index": 2,
            "link": chain_rest,
            "link_error": chain_rest,
            "timelimit": [1, 2],
            "trace": "t-1",
        },
    )
    act(admin_client_, "retry_tasks", [member.id])
    copy = TaskRecord.objects.exclude(pk=member.id).get()
    assert copy.headers == {"timelimit": [1, 2], "trace": "t-1", RETRY_OF_HEADER: str(member.id)}
    assert copy.group_id is None and copy.parent_id == member.parent_id


def test_retry_without_permission_does_nothing() -> None:
    failed = row(state=states.FAILURE)
    client = client_for(user_with("view_taskrecord", "change_taskrecord"))
    act(client, "retry_tasks", [failed.id])
    assert TaskRecord.objects.count() == 1


def test_bulk_retry_of_every_matching_row_is_chunked(admin_client_: Client) -> None:
    now = timezone.now()
    TaskRecord.objects.bulk_create(
        [
            TaskRecord(
                id=uuid7(),
                name="bulk",
                payload="[[], {}]",
                state=states.FAILURE,
                created_at=now,
                eta=now,
                done_at=now,
                queue="bulk",
            )
            for _ in range(1200)
        ]
    )
    row(state=states.FAILURE, queue="other")
    with CaptureQueriesContext(connection) as ctx:
        act(admin_client_, "retry_tasks", [uuid7()], across=True, query="?queue=bulk")
    assert TaskRecord.objects.filter(queue="bulk", state=states.PENDING).count() == 1200
    assert TaskRecord.objects.filter(queue="other").count() == 1
    # About two statements per 500 rows (read a chunk, insert its copies), never one a row.
    assert len(ctx.captured_queries) < 40


# -- revoke ---------------------------------------------------------------------------


def test_revoke_stops_only_unstarted_tasks() -> None:
    waiting = row(state=states.PENDING)
    retrying = row(state=states.RETRY)
    running = row(state=states.STARTED)
    done = row(state=states.SUCCESS)
    client = client_for(user_with("view_taskrecord", "change_taskrecord"))
    act(client, "revoke_tasks", [waiting.id, retrying.id, running.id, done.id])
    got = dict(TaskRecord.objects.values_list("id", "state"))
    assert got == {
        waiting.id: "REVOKED",
        retrying.id: "REVOKED",
        running.id: "STARTED",
        done.id: "SUCCESS",
    }
    assert "revoked in the admin by" in TaskRecord.objects.get(pk=waiting.id).exc_message


def test_revoke_needs_the_change_permission() -> None:
    waiting = row(state=states.PENDING)
    act(client_for(user_with("view_taskrecord", "add_taskrecord")), "revoke_tasks", [waiting.id])
    assert TaskRecord.objects.get(pk=waiting.id).state == states.PENDING


def test_bulk_revoke_across_a_filter(admin_client_: Client) -> None:
    now = timezone.now()
    TaskRecord.objects.bulk_create(
        [
            TaskRecord(
                id=uuid7(), name="bulk", payload="[[], {}]", created_at=now, eta=now, queue="drain"
            )
            for _ in range(2500)
        ]
    )
    keep = row(queue="keep")
    with CaptureQueriesContext(connection) as ctx:
        act(admin_client_, "revoke_tasks", [keep.id], across=True, query="?queue=drain")
    assert TaskRecord.objects.filter(state=states.REVOKED).count() == 2500
    assert TaskRecord.objects.get(pk=keep.id).state == states.PENDING
    assert len(ctx.captured_queries) < 40


# -- delete ---------------------------------------------------------------------------


def test_delete_asks_first_then_deletes_and_logs(admin_client_: Client) -> None:
    a, b = row(state=states.SUCCESS), row(state=states.PENDING)
    keep = row()
    reply = act(admin_client_, "delete_selected", [a.id, b.id])
    assert reply.status_code == 200
    html = reply.content.decode()
    assert "Delete <strong>2</strong> tasks?" in html
    assert "1 of them has not finished" in html
    assert TaskRecord.objects.count() == 3
    reply = act(admin_client_, "delete_selected", [a.id, b.id], post="yes")
    assert reply.status_code == 302
    assert list(TaskRecord.objects.values_list("id", flat=True)) == [keep.id]
    logged = set(LogEntry.objects.filter(action_flag=DELETION).values_list("object_id", flat=True))
    assert logged == {str(a.id), str(b.id)}


def test_delete_across_a_filter_keeps_the_filter_through_the_confirmation(
    admin_client_: Client,
) -> None:
    for _ in range(3):
        row(queue="junk", state=states.SUCCESS)
    keep = row(queue="keep")
    reply = act(admin_client_, "delete_selected", [keep.id], across=True, query="?queue=junk")
    assert 'name="select_across" value="1"' in reply.content.decode()
    act(admin_client_, "delete_selected", [keep.id], across=True, query="?queue=junk", post="yes")
    assert list(TaskRecord.objects.values_list("id", flat=True)) == [keep.id]


def test_delete_needs_the_delete_permission() -> None:
    a = row()
    reply = act(
        client_for(user_with("view_taskrecord", "change_taskrecord")),
        "delete_selected",
        [a.id],
        post="yes",
    )
    assert reply.status_code in (200, 302)
    assert TaskRecord.objects.count() == 1


# -- CSRF -----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["retry_tasks", "revoke_tasks", "delete_selected"])
def test_actions_need_a_csrf_token(action: str) -> None:
    task = row(state=states.FAILURE)
    client = client_for(user_with(superuser=True), csrf=True)
    reply = act(client, action, [task.id], post="yes")
    assert reply.status_code == 403
    assert TaskRecord.objects.count() == 1
    task.refresh_from_db()
    assert task.state == states.FAILURE


# -- controls -------------------------------------------------------------------------


def control_url(name: str, target: Any) -> str:
    return reverse("admin:djtasks_taskrecord_control", args=[name, str(target)])


def test_revoke_control_confirms_then_revokes() -> None:
    task = row(state=states.PENDING)
    client = client_for(user_with("view_taskrecord", "change_taskrecord"))
    page = client.get(control_url("revoke", task.id))
    assert page.status_code == 200 and "It will not run" in page.content.decode()
    assert TaskRecord.objects.get(pk=task.id).state == states.PENDING  # GET changes nothing
    back = reverse("admin:djtasks_taskrecord_change", args=[task.id])
    reply = client.post(control_url("revoke", task.id), {"next": back})
    assert reply.status_code == 302 and reply["Location"] == back
    assert TaskRecord.objects.get(pk=task.id).state == states.REVOKED


def test_revoke_control_reports_a_started_task(admin_client_: Client) -> None:
    task = row(state=states.STARTED)
    reply = admin_client_.post(control_url("revoke", task.id), follow=True)
    assert "only a task that has not started can be revoked" in reply.content.decode()
    assert TaskRecord.objects.get(pk=task.id).state == states.STARTED


@pytest.mark.parametrize(
    "user_factory, status",
    [
        (lambda: None, 302),
        (lambda: user_with("change_taskrecord", staff=False), 302),
        (lambda: user_with("view_taskrecord"), 403),
    ],
)
def test_control_permissions(user_factory: Callable[[], User | None], status: int) -> None:
    task = row()
    client = client_for(user_factory())
    assert client.post(control_url("revoke", task.id)).status_code == status
    assert TaskRecord.objects.get(pk=task.id).state == states.PENDING


def test_control_rejects_unknown_names_bad_ids_and_foreign_redirects(admin_client_: Client) -> None:
    task = row()
    assert admin_client_.get(control_url("explode", task.id)).status_code == 404
    assert admin_client_.get(control_url("revoke", "not-an-id")).status_code == 404
    reply = admin_client_.post(control_url("revoke", task.id), {"next": "https://evil.example/"})
    assert reply["Location"] == reverse("admin:djtasks_taskrecord_dashboard")


def test_control_needs_csrf() -> None:
    task = row()
    client = client_for(user_with(superuser=True), csrf=True)
    assert client.post(control_url("revoke", task.id)).status_code == 403
    assert TaskRecord.objects.get(pk=task.id).state == states.PENDING


def test_registered_controls_appear_where_they_apply(admin_client_: Client) -> None:
    calls: list[str] = []
    controls.register(
        controls.Control(
            name="poke",
            label="Poke",
            target="task",
            permission="djtasks.change_taskrecord",
            question="Poke {target}?",
            run=lambda t, u: calls.append(t) or f"poked {t}",
            applies=lambda r: r["state"] == states.STARTED,
        )
    )
    try:
        running, done = row(state=states.STARTED), row(state=states.SUCCESS)
        detail = reverse("admin:djtasks_taskrecord_change", args=[running.id])
        assert ">Poke<" in admin_client_.get(detail).content.decode()
        done_detail = reverse("admin:djtasks_taskrecord_change", args=[done.id])
        assert ">Poke<" not in admin_client_.get(done_detail).content.decode()
        reply = admin_client_.post(control_url("poke", running.id), follow=True)
        assert calls == [str(running.id)] and "Poked" in reply.content.decode()
    finally:
        controls.unregister("poke")


def test_control_targets_are_checked() -> None:
    with pytest.raises(ValueError, match="target"):
        controls.register(
            controls.Control(
                name="x",
                label="X",
                target="planet",  # type: ignore[arg-type]
                permission="p",
                question="?",
                run=lambda t, u: "",
            )
        )
