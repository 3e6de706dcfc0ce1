"""The canvas without a database: signatures as values, JSON round trips,
building workflows, bad input, the rows a plan would write, what a finished
step leaves behind, and eager mode."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest
from django.test import override_settings

from djtasks import (
    EagerResult,
    GroupResult,
    Signature,
    chain,
    chord,
    chunks,
    group,
    signature,
    xmap,
    xstarmap,
)
from djtasks.canvas import ChordError, after_failure, after_success, maybe_signature, subtask
from djtasks.exceptions import DjtasksError, NotRegistered
from tests.testapp.canvas_tasks import collect, concat, error_handler, explode, mul, xsum
from tests.testapp.tasks import BoomError, add, echo

# -- signatures as values -------------------------------------------------------------


def test_s_si_and_signature() -> None:
    s = add.s(2, 2)
    assert (s.task, s.name, s.args, s.kwargs, s.options, s.immutable) == (
        add.name,
        add.name,
        (2, 2),
        {},
        {},
        False,
    )
    assert add.si(2, 2).immutable
    t = add.signature((2,), {"y": 3}, countdown=10)
    assert (t.args, t.kwargs, t.options) == ((2,), {"y": 3}, {"countdown": 10})
    assert signature(add.name, (1, 2)) == add.s(1, 2)
    assert subtask is signature and maybe_signature is signature
    assert add.subtask((1, 2)) == add.s(1, 2)


def test_repr_and_equality() -> None:
    assert repr(add.s(1, y=2)) == f"{add.name}(1, y=2)"
    assert repr(add.si(1)) == f"{add.name}!(1)"
    assert repr(add.s(1) | mul.s(2)) == f"{add.name}(1) | {mul.name}(2)"
    assert add.s(1) == add.s(1)
    assert add.s(1) != add.s(2)
    assert add.s(1) != add.si(1)
    assert add.s(1) != "add"
    with pytest.raises(TypeError):
        hash(add.s(1))


def test_partials_prepend_arguments_and_merge_kwargs() -> None:
    partial = add.s(2)
    full = partial.clone((4,))
    assert full.args == (4, 2)
    assert partial.args == (2,)  # clone copies
    assert echo.s(value=1).clone(kwargs={"value": 2}).kwargs == {"value": 2}
    assert add.si(1, 1).clone((9,), {"x": 1}).args == (1, 1)  # immutable: unchanged
    assert add.s(1).clone(countdown=5).options == {"countdown": 5}
    assert add.s(1, 1)() == 2  # calling a signature runs the function here
    assert add.s(1)(41) == 42


def test_set_link_and_on_error() -> None:
    s = add.s(1, 1)
    assert s.set(queue="hipri", priority=5) is s
    assert s.options == {"queue": "hipri", "priority": 5}
    cb = echo.s()
    assert s.link(cb) is cb
    err = error_handler.s()
    assert s.on_error(err) is err
    s.link_error(echo.si(1))
    assert [d["task"] for d in s.options["link"]] == [echo.name]
    assert [d["task"] for d in s.options["link_error"]] == [error_handler.name, echo.name]
    with pytest.raises(TypeError, match="unknown option"):
        s.set(qeue="typo")
    with pytest.raises(TypeError, match="unknown option"):
        add.signature((1, 1), countdonw=3)


def test_pipes_build_chains_and_chords() -> None:
    a, b, c = add.s(1, 1), mul.s(2), add.s(3)
    ab = a | b
    assert isinstance(ab, chain) and ab.tasks == [a, b]
    assert (ab | c).tasks == [a, b, c]  # flat, not nested
    assert (a | (b | c)).tasks == [a, b, c]
    assert chain(ab, c).tasks == [a, b, c]
    g = group(add.s(1, 1), add.s(2, 2))
    gc = g | xsum.s()
    assert isinstance(gc, chord) and gc.body == xsum.s()
    assert isinstance(a | g, chain)
    with pytest.raises(TypeError):
        a | 5


def test_group_and_chain_take_generators_lists_and_dicts() -> None:
    assert len(group(add.s(i, i) for i in range(3))) == 3
    assert len(group([add.s(1, 1), add.s(2, 2)])) == 2
    assert [t.task for t in group([add.s(1, 1).to_dict()])] == [add.name]
    assert len(chain([add.s(1, 1), mul.s(2)]).tasks) == 2
    assert len(group(group(add.s(1, 1)), add.s(2, 2))) == 2  # nested groups flatten


# -- JSON round trip ----------------------------------------------------------------------


VALUES = [
    dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC),
    dt.date(2024, 1, 2),
    decimal.Decimal("1.10"),
    uuid.UUID(int=5),
    b"\x00\xff",
    {1, 2},
    (1, "a"),
]


def _through_json(sig: Signature) -> Signature:
    return Signature.from_dict(json.loads(json.dumps(sig.to_dict())))


@pytest.mark.parametrize(
    "sig",
    [
        add.s(1, 2),
        add.si(1, 2).set(countdown=3, queue="q", priority=4),
        echo.signature(VALUES[:-1], {"value": VALUES[:-1]}),
        chain(add.s(1, 1), mul.s(2), add.si(0, 0)),
        group(add.s(i, i) for i in range(3)),
        chord([add.s(1, 1), add.s(2, 2)], xsum.s()),
        chain(
            add.s(1, 1),
            group(add.s(1), chain(add.s(2), mul.s(3))),
            chord([add.s(1, 1)], xsum.s() | mul.s(2)),
        ),
    ],
    ids=["task", "immutable-with-options", "typed-values", "chain", "group", "chord", "nested"],
)
def test_signatures_round_trip_through_json(sig: Signature) -> None:
    back = _through_json(sig)
    assert back == sig
    assert type(back) is type(sig)
    assert back.to_dict() == sig.to_dict()
    assert repr(back) == repr(sig)


def test_typed_arguments_come_back_as_their_types() -> None:
    back = _through_json(echo.s(*VALUES))
    assert list(back.args) == [*VALUES[:-1], [1, "a"]]  # a tuple comes back a list, as in JSON


def test_links_survive_the_round_trip() -> None:
    s = add.s(1, 1)
    s.link(mul.s(2))
    s.link_error(error_handler.s())
    back = _through_json(s)
    assert back.options["link"] == [mul.s(2).to_dict()]
    assert back.options["link_error"] == [error_handler.s().to_dict()]


def test_signature_of_a_stored_dict_clones_it() -> None:
    stored = add.s(2).to_dict()
    assert signature(stored, (1,), countdown=2) == add.signature((1, 2), countdown=2)
    assert signature(add.s(2)) == add.s(2)


# -- bad input -----------------------------------------------------------------------------


def test_a_signature_needs_a_task() -> None:
    with pytest.raises(TypeError, match="needs a task"):
        Signature(None)
    with pytest.raises(TypeError, match="needs a task"):
        Signature("")
    with pytest.raises(TypeError, match="args must be a list or tuple"):
        Signature(add, "ab")
    with pytest.raises(TypeError, match="kwargs must be a dict"):
        Signature(add, (), [1])  # type: ignore[arg-type]


def test_a_signature_of_an_unknown_task_fails_at_call_time_naming_it() -> None:
    sig = signature("nowhere.missing", (1,))  # building is allowed: it may be registered later
    with pytest.raises(DjtasksError, match=r"nowhere\.missing"):
        sig.apply_async()
    with pytest.raises(DjtasksError, match=r"nowhere\.missing"):
        chain(add.s(1, 1), sig).apply_async()
    with pytest.raises(NotRegistered, match=r"nowhere\.missing"):
        sig()


def test_a_step_with_bad_arguments_fails_the_whole_call() -> None:
    # Raised before anything is written: no database needed.
    with pytest.raises(TypeError, match="bad arguments"):
        group(add.s(1, 1), add.s(1, 2, 3)).apply_async()
    with pytest.raises(TypeError, match="bad arguments"):
        chord([add.s(1, 1)], add.s(1, 2)).apply_async()  # the body gets the results: 3 args
    with pytest.raises(TypeError, match="bad arguments"):
        chain(add.s(1, 1), add.s(1, 2)).apply_async()  # the previous result makes 3
    with pytest.raises(TypeError, match="bad arguments"):
        add.apply_async((1, 1), link=add.s(1, 2))
    with pytest.raises(TypeError, match="bad arguments"):
        add.apply_async((1, 1), link_error=echo.s(1))  # the errback gets the task id too
    with pytest.raises(DjtasksError, match=r"nowhere\.missing"):
        add.apply_async((1, 1), link=signature("nowhere.missing"))
    with pytest.raises(DjtasksError, match="registered task"):
        xmap("nowhere.missing", [1])
    assert chain(add.s(1, 1), add.si(1, 2)).plan().messages  # immutable: takes its own args


def test_non_signatures_in_a_chain_or_group_are_refused_at_build_time() -> None:
    with pytest.raises(TypeError, match=r"chain\(\) takes signatures"):
        chain(add.s(1, 1), add)
    with pytest.raises(TypeError, match=r"chain\(\) takes signatures"):
        chain(add.s(1, 1), "tests.testapp.tasks.add")
    with pytest.raises(ValueError, match="at least one"):
        chain()
    with pytest.raises(TypeError, match=r"group\(\) takes signatures"):
        group([add.s(1, 1), 42])
    with pytest.raises(TypeError, match="body must be a signature"):
        chord([add.s(1, 1)], "xsum")
    with pytest.raises(TypeError, match="not a signature"):
        Signature.from_dict({"nothing": 1})


def test_an_empty_group_fails_at_call_time() -> None:
    empty = group([])
    with pytest.raises(ValueError, match="empty group"):
        empty.apply_async()
    with pytest.raises(ValueError, match="empty group"):
        empty.delay()
    with pytest.raises(ValueError, match="empty group"):
        empty()
    with pytest.raises(ValueError, match="empty group"):
        empty.apply()


def test_a_chord_without_a_body_fails_at_call_time() -> None:
    with pytest.raises(ValueError, match="needs a body"):
        chord([add.s(1, 1)]).apply_async()


def test_chunks_needs_a_positive_size() -> None:
    with pytest.raises(ValueError, match="chunk size"):
        chunks(add, [(1, 1)], 0)


# -- plans: the rows a call would write -----------------------------------------------------


def test_a_chain_plan_is_its_first_row_with_the_rest_in_its_headers() -> None:
    c = chain(add.s(1, 1), mul.s(2), add.s(3))
    c.freeze()
    (msg,) = c.plan().messages
    assert str(msg.id) == c.tasks[0].id
    assert [Signature.from_dict(d) for d in msg.headers["chain"]] == c.tasks[1:]


def test_a_chord_plan_is_its_header_rows_and_a_group_record() -> None:
    c = chord([add.s(1, 1), add.s(2, 2)], xsum.s())
    plan = c.plan()
    assert [m.headers["group_index"] for m in plan.messages] == [0, 1]
    (record,) = plan.groups
    assert {m.headers["chord"] for m in plan.messages} == {str(record.id)}
    assert {m.group_id for m in plan.messages} == {record.id}
    assert record.member_ids == [str(m.id) for m in plan.messages]
    assert record.body_id == c.body.id
    assert Signature.from_dict(record.body) == c.body


def test_a_signature_carries_its_options_into_the_row() -> None:
    (msg,) = (
        add.signature((1, 1), queue="hipri", priority=7, countdown=60, headers={"x": 1})
        .plan()
        .messages
    )
    assert (msg.queue, msg.priority, msg.headers) == ("hipri", 7, {"x": 1})
    assert msg.eta > msg.created_at + dt.timedelta(seconds=59)


def test_options_of_a_group_or_chord_reach_every_row() -> None:
    g = group(add.s(1, 1), add.s(2, 2)).set(queue="bulk", priority=3)
    assert {(m.queue, m.priority) for m in g.clone().plan().messages} == {("bulk", 3)}
    c = chord([add.s(1, 1)], xsum.s(), queue="bulk")
    assert {m.queue for m in c.plan().messages} == {"bulk"}
    assert Signature.from_dict(c.plan().groups[0].body).options["queue"] == "bulk"
    ch = chain(add.s(1, 1), mul.s(2)).set(queue="bulk")
    (msg,) = ch.plan().messages
    assert msg.queue == "bulk"
    assert [d["options"]["queue"] for d in msg.headers["chain"]] == ["bulk"]


def test_an_own_option_of_a_step_wins_over_the_workflow_s() -> None:
    g = group(add.s(1, 1).set(queue="mine"), add.s(2, 2)).set(queue="bulk")
    assert [m.queue for m in g.plan().messages] == ["mine", "bulk"]


def test_a_chain_links_its_last_step_and_every_step_on_error() -> None:
    c = chain(add.s(1, 1), mul.s(2), add.s(3))
    c.link(echo.s())
    c.link_error(error_handler.s())
    (first,) = c.plan().messages
    steps = [Signature.from_dict(d) for d in first.headers["chain"]]
    assert "link" not in first.headers
    assert "link" not in steps[0].options
    assert steps[-1].options["link"] == [echo.s().to_dict()]
    assert first.headers["link_error"] == [error_handler.s().to_dict()]
    assert all(s.options["link_error"] == [error_handler.s().to_dict()] for s in steps)


def test_apply_async_link_on_a_chain_links_its_last_step() -> None:
    c = chain(add.s(1, 1), mul.s(2)).clone(link=echo.s())
    (first,) = c.plan().messages
    assert "link" not in first.headers
    assert Signature.from_dict(first.headers["chain"][0]).options["link"] == [echo.s().to_dict()]


def test_a_group_member_may_not_end_in_a_group() -> None:
    inner = chain(add.s(1, 1), group(add.s(1), add.s(2)))
    with pytest.raises(TypeError, match="ends in a group"):
        group(inner, add.s(1, 1)).plan()


# -- what a finished step leaves behind ---------------------------------------------------------


def test_after_success_plans_the_next_step_and_the_links() -> None:
    headers = {"chain": [mul.s(2).to_dict(), add.s(1).to_dict()], "link": [echo.s().to_dict()]}
    tid, root = str(uuid.uuid4()), str(uuid.uuid4())
    plan = after_success(headers, tid, root, 21)
    step, link = plan.messages
    assert step.name == mul.name
    assert json.loads(step.payload)[0] == [21, 2]
    assert [d["task"] for d in step.headers["chain"]] == [add.name]
    assert link.name == echo.name
    assert {(str(m.parent_id), str(m.root_id)) for m in plan.messages} == {(tid, root)}


def test_after_failure_calls_errbacks_with_the_task_id_and_skips_the_rest() -> None:
    rest = chain(mul.s(2), group(add.s(1), add.s(2)))
    rest.freeze()
    headers = {
        "chain": [t.to_dict() for t in rest.tasks],
        "link_error": [error_handler.s().to_dict()],
    }
    tid = str(uuid.uuid4())
    plan, skipped = after_failure(headers, tid, None, "BoomError: no")
    (errback,) = plan.messages
    assert json.loads(errback.payload)[0] == [tid]
    assert [s.id for s in skipped] == [leaf.id for leaf in rest.leaves()]
    assert all(tid in s.reason and "BoomError: no" in s.reason for s in skipped)


# -- eager mode ----------------------------------------------------------------------------------


@override_settings(DJTASKS_ALWAYS_EAGER=True)
def test_eager_chain_group_and_chord() -> None:
    res = chain(add.s(4, 4), mul.s(8), mul.s(10))()
    assert isinstance(res, EagerResult)
    assert res.get() == 640
    assert res.parent.get() == 64
    assert res.parent.parent.get() == 8
    g = group(add.s(i, i) for i in range(5))()
    assert isinstance(g, GroupResult) and g.get() == [0, 2, 4, 6, 8]
    assert chord((add.s(i, i) for i in range(10)), xsum.s())().get() == 90
    assert (group(add.s(i, i) for i in range(10)) | xsum.s()).delay().get() == 90
    assert chain(add.s(4), mul.s(8))(16).get() == 160  # a partial chain
    assert group(add.s(i) for i in range(3))(10).get() == [10, 11, 12]  # a partial group


@override_settings(DJTASKS_ALWAYS_EAGER=True)
def test_eager_nested_workflows() -> None:
    res = chain(add.s(1, 1), group(add.s(1), add.s(2)), concat.s()).delay()
    assert res.get() == [3, 4]
    res = chain(add.s(1, 1), chord([add.s(10), add.s(20)], xsum.s()), mul.s(2)).delay()
    assert res.get() == 68
    assert group(add.s(i, i) | mul.s(10) for i in range(3)).delay().get() == [0, 20, 40]


@override_settings(DJTASKS_ALWAYS_EAGER=True)
def test_eager_failures_stop_chains_and_chords() -> None:
    res = chain(add.s(1, 1), explode.s(), add.s(1)).delay()
    assert res.failed()
    with pytest.raises(BoomError):
        res.get()
    res = chord([add.s(1, 1), explode.s()], collect.s()).delay()
    assert res.failed()
    with pytest.raises(ChordError):
        res.get()


@override_settings(DJTASKS_ALWAYS_EAGER=True)
def test_eager_map_starmap_chunks_and_links() -> None:
    assert xsum.map([[1, 2], [3]]).delay().get() == [3, 3]
    assert add.starmap([(1, 1), (2, 2)]).delay().get() == [2, 4]
    assert add.chunks([(1, 1), (2, 2), (3, 3)], 2).delay().get() == [[2, 4], [6]]
    assert xmap(xsum, [[1]]).delay().get() == [1]
    assert xstarmap(add, [(1, 2)]).delay().get() == [3]
    seen: list[Any] = []
    from djtasks import signals

    def ran(sender: Any, retval: Any, **kw: Any) -> None:
        seen.append((sender.name, retval if not isinstance(retval, Exception) else "exc"))

    signals.task_postrun.connect(ran)
    try:
        add.apply_async((1, 1), link=[mul.s(10), echo.s()])
        boom = explode.s()
        boom.link_error(echo.s())
        failed = boom.delay()
        chain(add.s(1, 1), mul.s(3)).apply_async(link=echo.s())
    finally:
        signals.task_postrun.disconnect(ran)
    assert seen == [
        (add.name, 2),
        (mul.name, 20),
        (echo.name, 2),
        (explode.name, "exc"),
        (echo.name, failed.id),
        (add.name, 2),
        (mul.name, 6),
        (echo.name, 6),
    ]


def test_the_result_of_a_chain_walks_back_through_a_chord_s_header() -> None:
    c = chain(add.s(1, 1), chord([add.s(10), add.s(20)], xsum.s()), mul.s(2))
    c.freeze()
    res = c.result()
    body = res.parent
    header = body.parent
    assert (res.id, body.id) == (c.tasks[2].id, c.tasks[1].body.id)
    assert isinstance(header, GroupResult) and header.id == c.tasks[1].header.id
    assert header._parent.id == c.tasks[0].id


@override_settings(DJTASKS_ALWAYS_EAGER=True, DJTASKS_EAGER_PROPAGATES=False)
def test_eager_celery_style_errback_gets_request_exception_and_traceback() -> None:
    from tests.testapp.canvas_tasks import log_error

    seen: list[Any] = []
    original = log_error.run
    log_error.run = lambda request, exc, traceback: seen.append((request.id, exc, traceback))
    try:
        res = explode.apply_async(("x",), link_error=log_error.s())
    finally:
        log_error.run = original
    (call,) = seen
    assert call[0] == res.id
    assert isinstance(call[1], BoomError)
    assert "Traceback" in call[2]
