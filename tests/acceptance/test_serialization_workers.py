"""Serializers × compression through real ``taskworker`` processes, and rows a worker refuses.

The workers load ``serialization_settings_signed`` (everything accepted,
signed, pickled results) or ``serialization_settings_unsigned`` (the safe
serializers only); each test sets the same settings in this process.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import importlib
import importlib.util
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from djtasks import serialization, states
from djtasks.models import TaskRecord
from tests.acceptance.helpers import wait_until_finished
from tests.testapp import tasks
from tests.testapp.models import Execution
from tests.unit.test_serialization import _normalise

pytestmark = pytest.mark.django_db(transaction=True)

SIGNED = "tests.acceptance.serialization_settings_signed"
UNSIGNED = "tests.acceptance.serialization_settings_unsigned"
COMPRESSIONS = [None, "zlib", "bzip2"]
INSTALLED = ["json", *(n for n in ("msgpack", "yaml") if importlib.util.find_spec(n))]

VALUE = {
    "when": dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "day": dt.date(1999, 12, 31),
    "amount": decimal.Decimal("12345.6789"),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "blob": b"\x00\xff" * 50,
    "pairs": {(1, 2), (3, 4)},
    "pair": (5, 6),
    "text": "naïve ☃ " * 40,  # long enough for compression to pay
}


def use(settings: Any, module: str) -> None:
    """Give this process the worker's settings."""
    worker_settings = importlib.import_module(module)
    for name in ("DJTASKS_ACCEPT_CONTENT", "DJTASKS_SIGN_MESSAGES", "DJTASKS_RESULT_SERIALIZER"):
        setattr(settings, name, getattr(worker_settings, name))


def start(worker: Any, module: str) -> Any:
    return worker(concurrency=2, pool="threads", args=["--settings", module])


def row(name: str, content_type: str, payload: str) -> str:
    """Write a task row directly, as someone with write access to the table could."""
    record = TaskRecord.objects.create(
        name=name, content_type=content_type, payload=payload, eta=timezone.now()
    )
    return str(record.pk)


def test_every_serializer_and_compression_signed(settings: Any, worker: Any) -> None:
    use(settings, SIGNED)
    start(worker, SIGNED)
    calls = {
        (ser, comp): tasks.echo.apply_async((VALUE,), serializer=ser, compression=comp)
        for ser in [*INSTALLED, "pickle"]
        for comp in COMPRESSIONS
    }
    retried = tasks_retry().apply_async((VALUE,), compression="zlib")
    ids = [r.id for r in calls.values()] + [retried.id]
    assert wait_until_finished(ids) == {states.SUCCESS: len(ids)}
    for (ser, comp), result in calls.items():
        record = TaskRecord.objects.get(pk=result.id)
        ct = serialization.lookup(ser).content_type  # type: ignore[union-attr]
        assert (
            record.content_type == ct + (f"; compression={comp}" if comp else "") + "; hmac=sha256"
        )
        assert record.result_content_type == "application/x-python-serialize; hmac=sha256"
        expected = VALUE if ser == "pickle" else _normalise(VALUE)
        assert result.get(timeout=5) == expected, (ser, comp)
    # A retry with new arguments rewrote the payload, signed, in the same format.
    assert retried.get(timeout=5) == {"value": _normalise(VALUE), "step": 1}
    assert TaskRecord.objects.get(pk=retried.id).retries == 1


def test_every_safe_serializer_and_compression_unsigned(settings: Any, worker: Any) -> None:
    use(settings, UNSIGNED)
    start(worker, UNSIGNED)
    calls = {
        (ser, comp): tasks.echo.apply_async((VALUE,), serializer=ser, compression=comp)
        for ser in INSTALLED
        for comp in COMPRESSIONS
    }
    assert wait_until_finished([r.id for r in calls.values()]) == {states.SUCCESS: len(calls)}
    for (ser, comp), result in calls.items():
        assert result.get(timeout=5) == _normalise(VALUE), (ser, comp)
        assert TaskRecord.objects.get(pk=result.id).result_content_type == (
            "application/x-msgpack" if "msgpack" in INSTALLED else "application/json"
        )


def tasks_retry() -> Any:
    from tests.acceptance import serialization_tasks

    return serialization_tasks.retry_with_new_args


class OpenFile:
    """Unpickling this creates ``path``: the proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


def test_tampered_and_unsigned_rows_are_refused_and_never_run(
    settings: Any, worker: Any, tmp_path: Path
) -> None:
    use(settings, SIGNED)
    start(worker, SIGNED)
    name = tasks.record.name
    marker = tmp_path / "pickle-ran"
    ct, good = serialization.encode_arguments(name, ["ok"], {}, "json")
    signature = good.partition(":")[0]
    _, other = serialization.encode_arguments(tasks.echo.name, ["ok"], {}, "json")
    evil_pickle = base64.b64encode(pickle.dumps([[OpenFile(marker)], {}])).decode()
    with override_settings(SECRET_KEY="someone-else's-key"):
        forged_ct, forged = serialization.encode_arguments(name, [OpenFile(marker)], {}, "pickle")
    refused = {
        "changed payload": row(name, ct, f'{signature}:[["evil"],{{}}]'),
        "unsigned json": row(name, "application/json", '[["evil"],{}]'),
        "signed for another task": row(name, ct, other),
        "unsigned pickle": row(name, "application/x-python-serialize", evil_pickle),
        "pickle signed with another key": row(name, forged_ct, forged),
    }
    legit = tasks.record.delay("ok")
    ids = [*refused.values(), legit.id]
    assert wait_until_finished(ids) == {states.FAILURE: len(refused), states.SUCCESS: 1}
    for what, task_id in refused.items():
        record = TaskRecord.objects.get(pk=task_id)
        assert record.exc_type == "djtasks.serialization.BadSignature", what
        assert record.exc_message.startswith("cannot decode the arguments: the "), what
    assert (
        "signature does not verify for task 'tests.testapp.tasks.record'"
        in TaskRecord.objects.get(pk=refused["changed payload"]).exc_message
    )
    assert (
        "pickle payloads are only decoded with a valid signature"
        in TaskRecord.objects.get(pk=refused["unsigned pickle"]).exc_message
    )
    assert [e.task_id for e in Execution.objects.all()] == [legit.id]
    assert not marker.exists()


def test_a_content_type_the_worker_does_not_accept_is_refused(
    settings: Any, worker: Any, tmp_path: Path
) -> None:
    use(settings, UNSIGNED)
    start(worker, UNSIGNED)
    marker = tmp_path / "pickle-ran"
    with override_settings(DJTASKS_SIGN_MESSAGES=True, DJTASKS_ACCEPT_CONTENT=["json", "pickle"]):
        # Properly signed, but this worker does not accept pickle at all.
        ct, text = serialization.encode_arguments(
            tasks.record.name, [OpenFile(marker)], {}, "pickle"
        )
    refused = row(tasks.record.name, ct, text)
    legit = tasks.record.delay("ok")
    assert wait_until_finished([refused, legit.id]) == {states.FAILURE: 1, states.SUCCESS: 1}
    record = TaskRecord.objects.get(pk=refused)
    assert record.exc_type == "djtasks.exceptions.ContentDisallowed"
    assert "is not accepted (DJTASKS_ACCEPT_CONTENT)" in record.exc_message
    assert [e.task_id for e in Execution.objects.all()] == [legit.id]
    assert not marker.exists()
