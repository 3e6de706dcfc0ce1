"""The admin's view of workflows: a task's page links to its parent, root,
group and workflow; the workflow page shows the tree of the root's rows,
each with its state."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from djtasks import chain, chord, group, states
from djtasks.admin.workflow import load
from djtasks.models import TaskRecord
from tests.integration.test_canvas_plans import drain
from tests.testapp.canvas_tasks import collect, explode, mul, xsum
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db


def page(client: Any, task_id: Any) -> str:
    response = client.get(reverse("admin:djtasks_taskrecord_workflow", args=[str(task_id)]))
    assert response.status_code == 200
    return response.content.decode()


def depths(html: str) -> list[tuple[int, str]]:
    """(depth, task id) of each node of the tree, in display order."""
    return [
        (int(d), tid)
        for d, tid in re.findall(
            r'data-depth="(\d+)">.*?<code class="djtasks-id">([0-9a-f-]{36})</code>', html
        )
    ]


def test_the_workflow_page_shows_every_row_of_a_nested_workflow_as_a_tree(
    admin_client: Any, django_assert_max_num_queries: Any
) -> None:
    res = chain(
        add.s(1, 1), group(add.s(1), add.s(2)), xsum.s(), chord([mul.s(2), mul.s(3)], xsum.s())
    )()
    drain()
    assert res.get() == (3 + 4) * 2 + (3 + 4) * 3
    rows = TaskRecord.objects.all()
    assert rows.count() == 7  # add, 2 members, xsum, 2 members, xsum
    first = rows.order_by("created_at", "id").first()

    for any_row in rows:  # from any of its tasks, the same tree
        html = page(admin_client, any_row.id)
        assert {tid for _, tid in depths(html)} == {str(r.id) for r in rows}
    html = page(admin_client, first.id)
    tree = depths(html)
    assert tree[0] == (0, str(first.id))
    parents = {str(r.id): str(r.parent_id) if r.parent_id else None for r in rows}
    by_id = {tid: d for d, tid in tree}
    for tid, parent in parents.items():
        if parent:
            assert by_id[tid] == by_id[parent] + 1
    assert html.count("djtasks-state-success") >= rows.count()
    assert "chord member 0" in html and "chord member 1" in html and "chord body" in html
    assert 'id="djtasks-workflow-groups"' in html
    assert "2 of 2" in html  # the chord's record: both members done
    with django_assert_max_num_queries(20):
        load(str(first.id))


def test_a_failed_chain_shows_the_failure_and_the_steps_not_run(admin_client: Any) -> None:
    res = chain(add.s(1, 1), explode.s(), add.s(1), add.s(2))()
    drain()
    html = page(admin_client, res.id)
    assert depths(html) == [
        (0, res.parent.parent.parent.id),
        (1, res.parent.parent.id),
        (2, res.parent.id),
        (3, res.id),
    ]
    assert "djtasks-state-failure" in html and html.count("djtasks-state-revoked") >= 2
    assert "BoomError" in html
    assert "← this task" in html


def test_a_waiting_chord_says_how_many_members_it_waits_for(admin_client: Any) -> None:
    res = chord([add.s(i, i) for i in range(3)], collect.s())()
    html = page(admin_client, res.parent.results[0].id)
    assert len(depths(html)) == 3
    assert "0 of 3" in html and "runs when 3 more members finish" in html
    assert res.id in html  # the body's id, before it is a row


def test_a_task_page_links_to_parent_root_group_and_workflow(admin_client: Any) -> None:
    res = chain(add.s(1, 1), group(add.s(1), add.s(2)), xsum.s())()
    drain()
    member = TaskRecord.objects.filter(name=add.name).exclude(group_id=None).first()
    html = admin_client.get(reverse("admin:djtasks_taskrecord_change", args=[member.id]))
    text = html.content.decode()
    workflow = reverse("admin:djtasks_taskrecord_workflow", args=[str(member.id)])
    assert f'href="{workflow}"' in text
    assert f'href="{workflow}#group-{member.group_id}"' in text
    assert reverse("admin:djtasks_taskrecord_change", args=[str(member.parent_id)]) in text
    body = TaskRecord.objects.get(pk=res.id)
    text = admin_client.get(reverse("admin:djtasks_taskrecord_change", args=[body.id])).content
    assert reverse("admin:djtasks_taskrecord_change", args=[str(body.root_id)]).encode() in text


def test_a_group_s_members_are_the_roots_of_its_tree(admin_client: Any) -> None:
    res = group(add.s(1, 1), add.s(2, 2))()
    html = page(admin_client, res.results[1].id)
    assert depths(html) == [(0, res.results[0].id), (0, res.results[1].id)]
    assert "group member 0" in html and "group member 1" in html
    assert "0 of 2" in html


def test_a_plain_task_is_a_workflow_of_one(admin_client: Any) -> None:
    res = add.delay(1, 1)
    html = page(admin_client, res.id)
    assert depths(html) == [(0, res.id)]
    assert states.PENDING in html


def test_the_workflow_page_needs_a_known_task_and_staff(client: Any, admin_client: Any) -> None:
    missing = reverse(
        "admin:djtasks_taskrecord_workflow", args=["0" * 8 + "-0000-7000-8000-" + "0" * 12]
    )
    assert admin_client.get(missing).status_code == 404
    res = add.delay(1, 1)
    url = reverse("admin:djtasks_taskrecord_workflow", args=[res.id])
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
