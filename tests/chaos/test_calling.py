"""Scenario 12: bad input at the call site, property-based.

Whatever Hypothesis throws at ``apply_async()`` / ``delay()`` /
``bulk_delay()`` / a chain (arguments the serializer cannot encode, a
priority out of range or not an int, a naive eta, a negative countdown, a
queue not in ``DJTASKS_QUEUES``, a payload over ``DJTASKS_MAX_PAYLOAD_BYTES``,
a bad task id or expiry), the call raises a ``TypeError``/``ValueError``
(``EncodeError`` is one) that names the culprit, and not a single row is
written, inside a transaction or not. And a task whose return value cannot be
stored ends FAILURE saying so.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from djtasks import chain, states
from djtasks.models import TaskRecord
from djtasks.queue import Claimed
from djtasks.worker.executor import execute
from tests.chaos.app import tasks

pytestmark = pytest.mark.django_db

EXAMPLES = settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


#: Values the JSON serializer cannot encode, wherever they sit in the arguments.
unencodable = st.sampled_from(
    [
        object(),
        lambda: 1,
        complex(1, 2),
        Ellipsis,
        NotImplemented,
        range(3),
        type,
        {(1, 2): "tuple key"},
        _circular(),
        (x for x in ()),
    ]
)
plain = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def buried(draw: st.DrawFn) -> Any:
    """An unencodable value, alone or deep inside lists and dicts."""
    value = draw(unencodable)
    for _ in range(draw(st.integers(0, 3))):
        value = draw(st.sampled_from([lambda v: [v], lambda v: {"k": v}, lambda v: (1, v)]))(value)
    return value


@st.composite
def bad_call(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    """(what is wrong, apply_async options, a word the error message must contain)."""
    kind = draw(
        st.sampled_from(
            [
                "args",
                "kwargs",
                "priority",
                "priority-type",
                "eta",
                "countdown",
                "queue",
                "payload",
                "task_id",
                "expires",
                "signature",
            ]
        )
    )
    if kind == "args":
        return kind, {"args": [draw(buried()), 0.0]}, "cannot be encoded"
    if kind == "kwargs":
        return kind, {"args": [1], "kwargs": {"work": draw(buried())}}, "cannot be encoded"
    if kind == "priority":
        p = draw(st.one_of(st.integers(max_value=-101), st.integers(min_value=101)))
        return kind, {"args": [1], "priority": p}, "priority"
    if kind == "priority-type":
        p = draw(st.one_of(st.floats(), st.text(), st.booleans(), st.just([1])))
        return kind, {"args": [1], "priority": p}, "priority"
    if kind == "eta":
        naive = draw(
            st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1))
        )
        return kind, {"args": [1], "eta": naive}, "timezone-aware"
    if kind == "countdown":
        c = draw(st.one_of(st.floats(max_value=-1e-9), st.just(math.nan), st.text(min_size=1)))
        return kind, {"args": [1], "countdown": c}, "countdown"
    if kind == "queue":
        q = draw(st.text(min_size=1, max_size=100).filter(lambda q: q not in ("default", "chaos")))
        return kind, {"args": [1], "queue": q}, "queue"
    if kind == "payload":
        size = draw(st.integers(2000, 5000))
        return (
            kind,
            {"args": [1, 0.0], "kwargs": {}, "headers": {"pad": 1}, "_pad": "x" * size},
            "DJTASKS_MAX_PAYLOAD_BYTES",
        )
    if kind == "task_id":
        return kind, {"args": [1], "task_id": draw(st.text(max_size=40))}, "task_id"
    if kind == "expires":
        e = draw(st.one_of(st.floats(max_value=-1e-9), st.text(min_size=1), st.just(math.nan)))
        return kind, {"args": [1], "expires": e}, "expires"
    extra = draw(
        st.sampled_from([{"args": []}, {"args": [1, 2, 3]}, {"args": [1], "kwargs": {"nope": 1}}])
    )
    return kind, extra, "bad arguments"


def call(options: dict[str, Any]) -> Any:
    options = dict(options)
    pad = options.pop("_pad", None)
    if pad is not None:
        options["args"] = [pad]  # effect(i, work): a long "i" makes a long payload
    return tasks.effect.apply_async(**options)


@EXAMPLES
@given(case=bad_call(), in_transaction=st.booleans())
@override_settings(DJTASKS_QUEUES=["default", "chaos"], DJTASKS_MAX_PAYLOAD_BYTES=1024)
def test_a_bad_call_raises_a_clear_error_and_writes_nothing(
    case: tuple[str, dict[str, Any], str], in_transaction: bool
) -> None:
    kind, options, word = case
    if kind == "task_id":
        try:
            import uuid

            uuid.UUID(options["task_id"])
            return  # Hypothesis found a valid UUID: not a bad call
        except ValueError:
            pass
    before = TaskRecord.objects.count()
    with pytest.raises((TypeError, ValueError)) as raised:
        if in_transaction:
            with transaction.atomic():
                call(options)
        else:
            call(options)
    assert word in str(raised.value), (kind, str(raised.value))
    assert TaskRecord.objects.count() == before


@EXAMPLES
@given(case=bad_call())
@override_settings(DJTASKS_QUEUES=["default", "chaos"], DJTASKS_MAX_PAYLOAD_BYTES=1024)
def test_a_bad_call_in_bulk_or_in_a_chain_writes_nothing_either(
    case: tuple[str, dict[str, Any], str],
) -> None:
    kind, options, _ = case
    if kind in ("task_id", "payload"):
        return  # bulk_delay takes no task_id; a long first argument is covered above
    good = tasks.effect.s(1)
    opts = {k: v for k, v in options.items() if k not in ("args", "kwargs")}
    before = TaskRecord.objects.count()
    # The bad call is a later step: its row is built by the worker, after the
    # first step ran; the error must come now, at the call.
    args = options.get("args", ())
    later: tuple[Any, ...] = ()  # the previous result comes first: effect(result, *later)
    if kind == "args":
        later = (args[0],)
    elif kind == "signature":
        later = (1, 2, 3)
    bad = tasks.effect.signature(later, options.get("kwargs"), **opts)
    with pytest.raises((TypeError, ValueError)):
        chain(good, bad).apply_async()
    with pytest.raises((TypeError, ValueError)):
        calls = [((1,), {}), (tuple(args), options.get("kwargs") or {})]
        tasks.effect.bulk_delay(calls, **opts)
    assert TaskRecord.objects.count() == before


def test_valid_calls_still_write_their_row() -> None:
    with override_settings(DJTASKS_QUEUES=["default", "chaos"]):
        tasks.effect.apply_async(
            (1,), queue="chaos", priority=100, eta=timezone.now() + dt.timedelta(seconds=5)
        )
        tasks.effect.apply_async((2,), countdown=0, priority=-100)
    assert TaskRecord.objects.count() == 2


def test_djtasks_queues_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    for value, message in [
        ("default", "must be None (any queue) or a non-empty list"),
        ([], "must be None (any queue) or a non-empty list"),
        (["emails"], "DJTASKS_DEFAULT_QUEUE names queue 'default'"),
    ]:
        with override_settings(DJTASKS_QUEUES=value), pytest.raises(SystemCheckError) as err:
            call_command("check")
        assert "djtasks.E015" in str(err.value) and message in str(err.value)
    with (
        override_settings(
            DJTASKS_QUEUES=["default"], DJTASKS_TASK_ROUTES={"chaos.*": {"queue": "elsewhere"}}
        ),
        pytest.raises(SystemCheckError) as err,
    ):
        call_command("check")
    assert "DJTASKS_TASK_ROUTES['chaos.*'] names queue 'elsewhere'" in str(err.value)


@settings(max_examples=40, deadline=None)
@given(value=buried())
def test_an_unencodable_return_value_ends_failure_saying_why(value: Any) -> None:
    from djtasks import task
    from djtasks.registry import tasks as registry

    name = "chaos.returns_unencodable"
    if name not in registry:
        task(name=name)(lambda: returned[0])
    returned[0] = value
    claimed = Claimed(
        db_id=None,
        id="01a20000-0000-7000-8000-000000000001",
        name=name,
        queue="default",
        priority=0,
        content_type="application/json",
        payload="[[], {}]",
        headers={},
        retries=0,
        attempt=1,
        acks_late=False,
        ignore_result=False,
        expired=False,
        eta=None,
        parent_id=None,
        root_id=None,
        group_id=None,
    )
    outcome = execute(claimed, "in-process")
    assert outcome.state == states.FAILURE
    assert outcome.exc_type == "djtasks.exceptions.EncodeError"
    assert outcome.exc_message.startswith("the return value cannot be stored")


returned: list[Any] = [None]


@pytest.mark.parametrize("value", [math.nan, math.inf, {"ratio": -math.inf, "ok": [1.5, math.nan]}])
def test_a_result_json_cannot_hold_still_gives_valid_status_json(value: Any) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from djtasks import serialization

    result = tasks.effect.delay(1)
    ct, text = serialization.encode(value, "json")
    TaskRecord.objects.filter(pk=result.id).update(
        state=states.SUCCESS, result=text, result_content_type=ct
    )
    staff = Client()
    staff.force_login(User.objects.create_superuser("boss", "b@example.com", "pw"))
    body = staff.get(result.status_url()).content.decode()

    def strict(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    assert json.loads(body, parse_constant=strict)["ready"] is True
