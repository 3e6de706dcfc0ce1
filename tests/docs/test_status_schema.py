"""The JSON Schema of the status views in docs/results.md matches their replies.

The schema is read from the page (the ``json`` block under "The reply as a
JSON Schema") and every reply of both views is validated against it, for
each kind of row and each kind of caller. The few keywords the schema uses
are implemented here (the suite does not depend on a JSON Schema library).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from django.utils import timezone

from djtasks import AsyncResult, serialization
from djtasks.models import TaskRecord
from tests.docs import markdown

TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
    "number": (int, float),
    "integer": int,
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def schema() -> dict[str, Any]:
    page = markdown.read("results.md")
    [block] = [
        b for b in page.blocks if b.lang == "json" and b.heading == "The reply as a JSON Schema"
    ]
    return json.loads(block.text)


def validate(value: Any, node: dict[str, Any], root: dict[str, Any], where: str = "$") -> None:
    """Raise AssertionError if ``value`` does not match the schema ``node``."""
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        validate(value, target, root, where)
        return
    if "oneOf" in node:
        matches = 0
        for option in node["oneOf"]:
            try:
                validate(value, option, root, where)
            except AssertionError:
                continue
            matches += 1
        assert matches == 1, f"{where}: matches {matches} of the oneOf options: {value!r}"
        return
    if "type" in node:
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        ok = any(
            isinstance(value, TYPES[k])
            and not (k in ("number", "integer") and isinstance(value, bool))
            for k in kinds
        )
        assert ok, f"{where}: {value!r} is not {kinds}"
    if isinstance(value, dict):
        for key in node.get("required", ()):
            assert key in value, f"{where}: {key!r} is missing"
        properties = node.get("properties", {})
        if node.get("additionalProperties") is False:
            extra = set(value) - set(properties)
            assert not extra, f"{where}: unexpected keys {extra}"
        for key, sub in properties.items():
            if key in value:
                validate(value[key], sub, root, f"{where}.{key}")
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            validate(item, node["items"], root, f"{where}[{i}]")
    if isinstance(value, str):
        assert len(value) >= node.get("minLength", 0), f"{where}: too short"
        if node.get("format") == "uuid":
            assert UUID.match(value), f"{where}: {value!r} is not a UUID"
    if isinstance(value, int | float) and not isinstance(value, bool):
        assert value >= node.get("minimum", value), f"{where}: below the minimum"
        assert value <= node.get("maximum", value), f"{where}: above the maximum"


def _set(task_id: str, **fields: Any) -> None:
    TaskRecord.objects.filter(pk=task_id).update(**fields)


def _encoded(value: Any) -> dict[str, Any]:
    content_type, text = serialization.encode(value, "json")
    return {"result": text, "result_content_type": content_type}


@pytest.fixture
def rows(temp_task: Any) -> dict[str, str]:
    """Task ids in every shape the view describes, for a plain and a public task."""
    found = {"unknown": str(uuid.uuid4())}
    for kind, options in (("plain", {}), ("public", {"public_result": True})):
        task = temp_task(lambda: None, **options)
        for shape in ("pending", "numbers", "words", "scalar", "success", "failure", "revoked"):
            found[f"{kind}-{shape}"] = task_id = task.delay().id
            now = timezone.now()
            if shape == "numbers":
                _set(
                    task_id,
                    state="STARTED",
                    custom_state="PROGRESS",
                    **_encoded({"current": 3, "total": 12, "step": "resize"}),
                )
            elif shape == "words":
                _set(task_id, state="STARTED", custom_state="WAITING", **_encoded({"step": "x"}))
            elif shape == "scalar":
                _set(task_id, state="STARTED", custom_state="PROGRESS", **_encoded(0.5))
            elif shape == "success":
                _set(task_id, state="SUCCESS", done_at=now, **_encoded({"pages": 4}))
            elif shape in ("failure", "revoked"):
                _set(
                    task_id,
                    state=shape.upper(),
                    done_at=now,
                    exc_type="shop.errors.ReportError",
                    exc_message="no data",
                    traceback="Traceback (most recent call last):\n...",
                )
    return found


def _token(task_id: str) -> str:
    return AsyncResult(task_id).status_url().rstrip("/").rsplit("/", 1)[1]


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["anonymous", "staff"])
def test_every_reply_matches_the_schema(
    caller: str, client: Any, admin_client: Any, rows: dict[str, str]
) -> None:
    http = admin_client if caller == "staff" else client
    root = schema()
    for name, task_id in rows.items():
        reply = http.get(AsyncResult(task_id).status_url())
        assert reply.status_code == 200, name
        body = reply.json()
        validate(body, root, root, name)
        # The rules the page states beside the schema.
        assert body["ready"] == (body["state"] in ("SUCCESS", "FAILURE", "REVOKED")), name
        shown = caller == "staff" or name.startswith("public")
        assert ("result" in body) == (shown and body["ready"]), name
        assert ("error" in body) == (shown and body["state"] in ("FAILURE", "REVOKED")), name
        if name.endswith("numbers"):
            assert body["progress"]["percent"] == 25.0
            assert ("step" in body["progress"]) == shown, name
        if name.endswith("scalar"):
            assert body["progress"] == ({"meta": 0.5} if shown else None), name
    bulk = http.get("/tasks/status/", {"id": [_token(i) for i in rows.values()]})
    assert bulk.status_code == 200
    validate(bulk.json(), root, root, "bulk")
    assert [t["id"] for t in bulk.json()["tasks"]] == list(rows.values())


@pytest.mark.django_db
def test_errors_are_as_the_page_says(client: Any) -> None:
    assert client.get("/tasks/status/not-a-signed-token/").status_code == 404
    assert client.get("/tasks/status/", {"id": ["not-signed"]}).status_code == 404
    reply = client.get("/tasks/status/")
    assert reply.status_code == 400 and set(reply.json()) == {"error"}
    too_many = [_token(str(uuid.uuid4())) for _ in range(101)]
    assert client.get("/tasks/status/", {"id": too_many}).status_code == 400


def test_the_validator_rejects_what_the_schema_forbids() -> None:
    root = schema()
    good = {"id": str(uuid.uuid4()), "state": "PENDING", "ready": False, "progress": None}
    validate(good, root, root)
    for bad in (
        {**good, "extra": 1},
        {**good, "ready": "no"},
        {k: good[k] for k in ("id",)},
        {**good, "progress": {"percent": 120}},
        {**good, "id": "x"},
    ):
        with pytest.raises(AssertionError):
            validate(bad, root, root)
