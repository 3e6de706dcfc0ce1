"""HTTP callback tasks run by a real ``taskworker`` against a server in this test (127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from djtasks import states
from djtasks.http import URL, RemoteExecuteError
from djtasks.models import TaskRecord
from tests.acceptance.helpers import wait_until_finished
from tests.unit.test_http import Server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def test_a_worker_calls_urls(worker: Any, server: Server) -> None:
    worker(concurrency=2, pool="threads")  # the default settings: dispatch is built in
    server.fail_first = 1
    ok = URL(server.url("/multiply")).get_async(x=6, y=7)
    posted = URL(server.url("/echo")).post_async(items=[1, 2])
    failed = URL(server.url("/fail")).get_async()
    retried = URL(server.url("/busy")).get_async()  # 503 with Retry-After: 0, then success
    ids = [ok.id, posted.id, failed.id, retried.id]
    assert wait_until_finished(ids) == {states.SUCCESS: 3, states.FAILURE: 1}
    assert ok.get(timeout=5) == 42
    assert posted.get(timeout=5) == {"items": [1, 2]}
    assert retried.get(timeout=5) == "finally"
    assert TaskRecord.objects.get(pk=retried.id).retries == 1
    with pytest.raises(RemoteExecuteError, match="insufficient funds"):
        failed.get(timeout=5)
    assert TaskRecord.objects.get(pk=failed.id).exc_type == "djtasks.http.RemoteExecuteError"
