"""djtasks.backends on a Django without django.tasks (5.2): clear failures, never a crash.

On Django >= 6.0 only the import test runs; the rest is covered by
``tests/integration/test_django_tasks_backend.py``.
"""

from __future__ import annotations

import importlib.util
import uuid

import pytest
from django.utils import timezone
from django.utils.module_loading import import_string

from djtasks import states
from djtasks.backends import HEADER, execution
from djtasks.queue import Claimed

HAS_DJANGO_TASKS = importlib.util.find_spec("django.tasks") is not None
needs_old_django = pytest.mark.skipif(HAS_DJANGO_TASKS, reason="this Django has django.tasks")


def claimed(headers: dict) -> Claimed:
    task_id = str(uuid.uuid4())
    return Claimed(
        db_id=task_id,
        id=task_id,
        name="shop.tasks.send_receipt",
        queue="default",
        priority=0,
        content_type="application/json",
        payload="[[], {}]",
        headers=headers,
        retries=0,
        attempt=1,
        acks_late=False,
        ignore_result=False,
        expired=False,
        eta=timezone.now(),
        parent_id=None,
        root_id=None,
        group_id=None,
    )


def test_the_package_imports_on_every_django() -> None:
    import djtasks.backends  # noqa: F401 - the worker imports it through the executor


def test_rows_are_recognised_by_their_header() -> None:
    assert execution.is_django_task(claimed({HEADER: {"backend": "default"}}))
    assert not execution.is_django_task(claimed({}))
    assert not execution.is_django_task(claimed({"timelimit": [1, 2]}))


@pytest.mark.skipif(not HAS_DJANGO_TASKS, reason="needs django.tasks (Django >= 6.0)")
def test_tasks_setting_finds_the_backend() -> None:
    from djtasks.backends.database import DatabaseBackend

    assert import_string("djtasks.backends.DatabaseBackend") is DatabaseBackend


@needs_old_django
def test_importing_the_backend_says_it_needs_django_6() -> None:
    with pytest.raises(
        ImportError,
        match=r"django.tasks, which Django added in 6\.0; this "
        r"is Django 5\.",
    ):
        import_string("djtasks.backends.DatabaseBackend")
    with pytest.raises(ImportError, match=r"added in 6\.0"):
        from djtasks.backends import DatabaseBackend  # noqa: F401


@needs_old_django
def test_a_worker_without_django_tasks_fails_such_rows_saying_why() -> None:
    outcome = execution.execute(claimed({HEADER: {"backend": "default"}}), "w@test")
    assert outcome.state == states.FAILURE
    assert outcome.exc_type == "django.core.exceptions.ImproperlyConfigured"
    assert "needs Django >= 6.0; this worker runs Django 5." in outcome.exc_message
