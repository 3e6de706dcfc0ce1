"""``GET openapi.json``: a valid OpenAPI 3.1 document that describes every route, and
that schemathesis exercises against a live server on 127.0.0.1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import jsonschema_rs
import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.definitions import OPENAPI_31

from djtasks.api import urls as api_urls
from djtasks.api.openapi import document
from tests.testapp import tasks

TOKEN = "schemathesis-" + "s" * 40


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document("/tasks")
    jsonschema_rs.validator_for(OPENAPI_31).validate(doc)
    # Each schema in it is a valid JSON Schema (2020-12, the dialect of 3.1).
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def _route(pattern: Any) -> str:
    text = str(pattern.pattern)
    for converter in ("str:", "uuid:"):
        text = text.replace(f"<{converter}", "{")
    return "/" + text.replace(">", "}")


def test_every_route_is_described_with_its_methods() -> None:
    doc = document("/tasks")
    routes = {_route(p): p for p in api_urls.urlpatterns if isinstance(p, URLPattern)}
    assert set(doc["paths"]) == set(routes)
    for path, pattern in routes.items():
        methods = {m.lower() for m in pattern.callback.api_methods}
        assert set(doc["paths"][path]) == methods, path
        for operation in doc["paths"][path].values():
            public = pattern.callback.api_permission is None
            assert ("401" not in operation["responses"]) == public, path
            assert "400" in operation["responses"], path


def test_the_routes_are_mounted_once_under_djtasks_urls(db: None) -> None:
    resolver = get_resolver()
    mounted = [
        p
        for p in resolver.url_patterns
        if isinstance(p, URLResolver) and getattr(p, "namespace", None) == "djtasks"
    ]
    assert len(mounted) == 1
    body = Client().get("/tasks/openapi.json").json()
    assert body["paths"] == document("/tasks")["paths"]


# -- schemathesis against a live server ------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def live_api(transactional_db: None, settings: Any) -> Iterator[str]:
    """The example project served on 127.0.0.1 (a random port) in a thread."""
    settings.DJTASKS_API_TOKENS = {TOKEN: "schemathesis"}
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.DEBUG = False
    User.objects.create_superuser("schemathesis", password="pw")
    done = tasks.add.delay(1, 2)  # something to list (its id is not guessed)
    assert done.id
    server = make_server("127.0.0.1", 0, WSGIHandler(), server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="live-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


#: Examples per operation and generation mode: 16 operations × 2 modes × this.
EXAMPLES = 5


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_the_api_answers_as_documented(live_api: str, mode: str) -> None:
    """Generated requests to every operation (valid ones, then invalid ones): no 5xx,
    invalid input refused with a 4xx, and every answer (status, content type, body)
    as the document says."""
    from hypothesis import given

    loaded = schemathesis.openapi.from_url(f"{live_api}/tasks/openapi.json", timeout=10)
    generation = getattr(schemathesis.GenerationMode, mode.upper())
    operations = [result.ok() for result in loaded.get_all_operations()]
    # Every route but openapi.json itself, which schemathesis leaves out.
    assert len(operations) == 15
    for operation in operations:

        @given(case=operation.as_strategy(generation))
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            excluded = []
            # Valid by the document yet refused, as it says: arguments that do not fit
            # the task's signature (the document cannot state every task's), and a
            # cursor the API did not give (opaque).
            if case.operation.label.startswith("POST /tasks/apply/") or (
                "cursor" in (case.query or {})
            ):
                excluded.append(positive_data_acceptance)
            case.call_and_validate(
                base_url=f"{live_api}/tasks",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
                excluded_checks=excluded,
            )

        exercise()
