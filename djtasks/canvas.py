"""The canvas: signatures and the workflows built from them.

A :class:`Signature` is a value: a task name, arguments and call options,
storable as JSON (``to_dict`` / ``Signature.from_dict``). ``chain``,
``group`` and ``chord`` combine signatures; calling one turns it into rows
(a *plan*: messages to insert, groups to record) written in one transaction.

Every step is a row. What comes next travels with the row that comes before
(``headers["chain"]``, ``headers["link"]``, ``headers["chord"]``) and is
inserted by the worker in the same transaction that records the step's
outcome, so a workflow survives any crash between two steps.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from . import serialization, states
from .exceptions import DjtasksError
from .ids import uuid7
from .registry import tasks as registry

#: Call options a signature may carry into ``Task.build_message``.
CALL_OPTIONS = frozenset(
    {
        "countdown",
        "eta",
        "expires",
        "queue",
        "priority",
        "task_id",
        "serializer",
        "headers",
        "ignore_result",
        "acks_late",
        "time_limit",
        "soft_time_limit",
        "unique_key",
        "unique_for",
        "link",
        "link_error",
    }
)
#: Options the canvas sets on signatures for its own bookkeeping.
_INTERNAL = frozenset({"group_id", "group_index", "chord", "parent_id", "root_id"})
#: Options of a chain, group or chord that every one of its tasks inherits
#: (a task's own setting wins). The others go where they make sense: see
#: ``chain._steps``, ``group._members`` and ``chord._parts``.
_SHARED = frozenset(
    {"queue", "priority", "serializer", "headers", "acks_late", "time_limit", "soft_time_limit"}
)
_CALLBACKS = ("link", "link_error")
_S = TypeVar("_S", bound="Signature")


def _checked_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` validated, with callbacks as lists of signature dicts."""
    unknown = set(options) - CALL_OPTIONS - _INTERNAL
    if unknown:
        raise TypeError(f"unknown option(s) for {name}: {', '.join(sorted(unknown))}")
    out = dict(options)
    for key in _CALLBACKS:
        if key in out:
            if out[key] is None:
                del out[key]
            else:
                out[key] = _callback_dicts(out[key], key)
    return out


def _with_defaults(sig: _S, options: dict[str, Any]) -> _S:
    """A copy of ``sig`` taking the ``options`` it does not set itself; callbacks add up."""
    new = copy.deepcopy(sig)
    for key, value in options.items():
        if key in _CALLBACKS:
            new.options[key] = [*new.options.get(key, []), *value]
        else:
            new.options.setdefault(key, value)
    return new


class ChordError(DjtasksError):
    """A member of a chord's header failed, so its body did not run."""


def _plain(value: Any) -> Any:
    # Arguments may hold datetimes, Decimals...: keep their type tags so a
    # stored signature decodes to the same values.
    return json.loads(serialization.JSON.dumps(value))


def _unplain(value: Any) -> Any:
    # ``value`` may come from ``to_dict`` (type tags as plain dicts) or from a
    # task's decoded arguments (tags already turned into dates...): the
    # tag-aware encoder takes both.
    return serialization.JSON.loads(serialization.JSON.dumps(value))


@dataclass
class Plan:
    """Rows to write for a canvas call: task messages and group records."""

    messages: list[Any] = field(default_factory=list)
    groups: list[GroupRecord] = field(default_factory=list)

    def extend(self, other: Plan) -> Plan:
        self.messages.extend(other.messages)
        self.groups.extend(other.groups)
        return self


@dataclass
class GroupRecord:
    """A group (or a chord's header) as stored in :class:`~djtasks.models.TaskGroup`."""

    id: uuid.UUID
    member_ids: list[str]
    body: dict[str, Any] | None = None  # the chord's body signature
    body_id: str | None = None


class Signature:
    """A task call not made yet: ``add.s(2, 2)``, ``add.si(2, 2)``, ``signature("x", ...)``."""

    subtask_type: str | None = None

    def __init__(
        self,
        task: Any = None,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        immutable: bool = False,
        **extra_options: Any,
    ) -> None:
        name = getattr(task, "name", task)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a signature needs a task or a task name, not {task!r}")
        if isinstance(args, str | bytes) or not isinstance(args, Iterable):
            raise TypeError(f"signature args must be a list or tuple, not {args!r}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"signature kwargs must be a dict, not {kwargs!r}")
        self.task = name
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.options = _checked_options(name, {**(options or {}), **extra_options})
        self.immutable = bool(immutable)

    # -- values ------------------------------------------------------------------

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task}{'!' if self.immutable else ''}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment] - mutable, like Celery's

    @property
    def id(self) -> str | None:
        tid = self.options.get("task_id")
        return None if tid is None else str(tid)

    @property
    def name(self) -> str:
        return self.task

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible form; :meth:`from_dict` restores it."""
        return {
            "task": self.task,
            "args": _plain(list(self.args)),
            "kwargs": _plain(self.kwargs),
            "options": _plain(self.options),
            "immutable": self.immutable,
            "subtask_type": self.subtask_type,
        }

    __json__ = to_dict

    @staticmethod
    def from_dict(data: dict[str, Any] | Signature) -> Signature:
        """Rebuild a signature (of any canvas type) from :meth:`to_dict` output."""
        if isinstance(data, Signature):
            return data
        if not isinstance(data, dict) or ("task" not in data and "tasks" not in data):
            raise TypeError(f"not a signature: {data!r}")
        kind = data.get("subtask_type")
        if kind == "chain":
            return chain(
                *[Signature.from_dict(t) for t in data["tasks"]],
                **_unplain(data.get("options") or {}),
            )
        if kind == "group":
            return group(
                [Signature.from_dict(t) for t in data["tasks"]],
                **_unplain(data.get("options") or {}),
            )
        if kind == "chord":
            return chord(
                group.from_dict(data["header"]),
                Signature.from_dict(data["body"]),
                **_unplain(data.get("options") or {}),
            )
        return Signature(
            data["task"],
            _unplain(data.get("args") or []),
            _unplain(data.get("kwargs") or {}),
            _unplain(data.get("options") or {}),
            immutable=bool(data.get("immutable")),
        )

    def clone(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Signature:
        """A copy with ``args`` prepended (unless immutable), kwargs merged, options updated."""
        new = copy.deepcopy(self)
        if not self.immutable:
            new.args = tuple(args) + self.args
            new.kwargs = {**self.kwargs, **(kwargs or {})}
        new.options.update(_checked_options(self.task, options))
        return new

    def set(self, **options: Any) -> Signature:
        """Set call options on this signature (returns it, for chaining).

        On a chain, group or chord, queue, priority, serializer, headers,
        acks_late and the time limits reach every task of it that does not
        set its own.
        """
        self.options.update(_checked_options(self.task, options))
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = bool(immutable)

    def link(self, callback: Signature) -> Signature:
        """Call ``callback`` with this task's result when it succeeds.

        A chain calls it after its last step, a chord after its body, a group
        after each member (with that member's result).
        """
        self.options["link"] = [*self.options.get("link", []), _as_signature(callback).to_dict()]
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Call ``errback`` with this task's id when it fails.

        On a chain or group, the errback is called by whichever task fails;
        on a chord, when its body fails or cannot run (a member failed).
        """
        self.options["link_error"] = [
            *self.options.get("link_error", []),
            _as_signature(errback).to_dict(),
        ]
        return errback

    on_error = link_error

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, group):
            return chain(self, other)
        if isinstance(other, Signature):
            return chain(self, other)
        return NotImplemented

    # -- calling ------------------------------------------------------------------

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Call with extra args prepended (a partial), with the signature's options."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """Enqueue (all rows of the workflow in one transaction); return its result handle.

        Every task of the workflow is checked now, also those that will run
        later (chain steps, a chord's body, callbacks): each must be registered
        and accept its arguments with the previous result (an errback: the
        failed task's id) prepended, unless it is immutable.

        :raises djtasks.exceptions.DjtasksError: a task of the workflow is not
            registered in this process.
        :raises TypeError, ValueError: bad arguments or options, an empty group.
        """
        from .conf import settings

        sig = self.clone(args, kwargs, **options)
        sig.freeze()
        plan = sig.plan((), (), _workflow_parent(sig))
        check_later_steps(sig, {str(m.id) for m in plan.messages})
        if settings.ALWAYS_EAGER:
            return sig.apply()
        write_plan(plan)
        return sig.result()

    def __invert__(self) -> Any:
        """``~sig``: call it and wait for its result (Celery's shortcut, for shells)."""
        return self.apply_async().get()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task function now, in this process."""
        sig = self.clone(args, kwargs)
        return registry.get(self.task)(*sig.args, **sig.kwargs)

    def apply(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """Run in this process (eager), callbacks included; return an EagerResult."""
        from .task import _run_links_eagerly

        sig = self.clone(args, kwargs, **options)
        task = registry.get(sig.task)
        result = task.apply(sig.args, sig.kwargs, task_id=sig.id)
        _run_links_eagerly(result, sig.options.get("link"), sig.options.get("link_error"))
        return result

    # -- planning --------------------------------------------------------------

    def freeze(self) -> None:
        """Give this signature (and, for workflows, every step) its task id now."""
        self.options.setdefault("task_id", str(uuid7()))

    def result(self) -> Any:
        from .result import AsyncResult

        return AsyncResult(self.id, task_name=self.task)

    def leaves(self) -> list[Signature]:
        """The task signatures this one will run (for reporting what did not)."""
        return [self]

    def last(self) -> Signature:
        """The signature whose result is this one's result."""
        return self

    def plan(
        self,
        prefix: Sequence[Any] = (),
        chain_rest: Sequence[Signature] = (),
        parent: tuple[str | None, str | None] = (None, None),
    ) -> Plan:
        """The rows for calling this signature with ``prefix`` args prepended."""
        try:
            task = registry.get(self.task)
        except KeyError as exc:
            raise DjtasksError(f"cannot call signature {self!r}: {exc}") from None
        opts = dict(self.options)
        headers = dict(opts.pop("headers", None) or {})
        group_id = opts.pop("group_id", None)
        if group_id is not None:
            headers["group_index"] = opts.pop("group_index", 0)
        if "chord" in opts:
            headers["chord"] = opts.pop("chord")
        if chain_rest:
            headers["chain"] = [s.to_dict() for s in chain_rest]
        parent_id = opts.pop("parent_id", None) or parent[0]
        root_id = opts.pop("root_id", None) or parent[1]
        args = self.args if self.immutable else tuple(prefix) + self.args
        message = task.build_message(
            args,
            self.kwargs,
            headers=headers,
            group_id=group_id,
            parent_id=parent_id,
            root_id=root_id,
            **opts,
        )
        return Plan([message])


def _as_signature(value: Any) -> Signature:
    if isinstance(value, Signature):
        return value
    if isinstance(value, dict):
        return Signature.from_dict(value)
    raise TypeError(f"expected a signature (task.s(...)), not {value!r}")


def callbacks_to_signatures(value: Any) -> list[Signature]:
    items = value if isinstance(value, list | tuple) else [value]
    return [_as_signature(v) for v in items]


def _callback_dicts(value: Any, what: str) -> list[dict[str, Any]]:
    try:
        return [s.to_dict() for s in callbacks_to_signatures(value)]
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from None


def callbacks_to_dicts(value: Any, what: str = "link") -> list[dict[str, Any]]:
    """Callbacks of a call (``link=``/``link_error=``) as signature dicts,
    checked like the steps of a workflow (see :func:`check_later_steps`)."""
    dicts = _callback_dicts(value, what)
    for data in dicts:
        check_later_steps(Signature.from_dict(data), set(), errback=what == "link_error")
    return dicts


def _workflow_parent(sig: Signature) -> tuple[str | None, str | None]:
    """``(parent_id, root_id)`` of the first rows of a call.

    A workflow started by a running task hangs under it, like any task it
    enqueues; otherwise its first task is the root of every row of the
    workflow, itself included, so one root id finds them all.
    """
    from .request import current_request

    request = current_request.get()
    if request is not None and not request.is_eager and request.id:
        return request.id, request.root_id or request.id
    if type(sig) is Signature:
        return None, None  # a plain call, as Task.apply_async writes it
    return None, sig.leaves()[0].id


def _nodes(sig: Signature, errback: bool = False) -> Iterable[tuple[Signature, bool]]:
    """``sig`` and every signature inside it, callbacks included, each with
    whether it is an error callback."""
    yield sig, errback
    if isinstance(sig, chain | group):
        for t in sig.tasks:
            yield from _nodes(t)
    elif isinstance(sig, chord):
        yield from _nodes(sig.header)
        if sig.body is not None:
            yield from _nodes(sig.body)
    for key in _CALLBACKS:
        for data in sig.options.get(key) or []:
            yield from _nodes(Signature.from_dict(data), key == "link_error")


def check_later_steps(sig: Signature, planned: set[str], errback: bool = False) -> None:
    """Refuse now what a worker would refuse later.

    Tasks of ``sig`` whose rows are not in ``planned`` (the rows written now,
    already checked) run later with one more argument first (the previous
    result, a chord's results, a failed task's id): each must be a registered
    task that accepts that, unless immutable. A Celery-style errback (see
    :func:`takes_request`) must accept ``(request, exc, traceback)``.
    """
    for node, is_errback in _nodes(sig, errback):
        if node.subtask_type is not None or (node.id is not None and node.id in planned):
            continue
        try:
            task = registry.get(node.task)
        except KeyError as exc:
            raise DjtasksError(f"cannot call signature {node!r}: {exc}") from None
        if is_errback and takes_request(node):
            args: tuple[Any, ...] = (None, None, None, *node.args)
        else:
            args = node.args if node.immutable else (None, *node.args)
        task._check_arguments(args, node.kwargs)
        # Its options too (priority, eta, queue, time limits...): the worker
        # builds its row with them once the previous step has run.
        task.build_message(
            args, node.kwargs, **{k: v for k, v in node.options.items() if k in CALL_OPTIONS}
        )


def takes_request(errback: Signature) -> bool:
    """Whether an error callback is Celery-style: its task's first parameter
    is named ``request``, so it is called ``(request, exc, traceback)`` in the
    worker process, right after the failure, instead of being enqueued with
    the failed task's id."""
    if type(errback) is not Signature or errback.task not in registry:
        return False
    task = registry.get(errback.task)
    sig = task._signature
    if sig is None:
        return False
    positional = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    positional = positional[1:] if task.bind else positional
    return bool(positional) and positional[0].name == "request"


def call_errbacks_in_process(
    headers: dict[str, Any], request: Any, exc: BaseException, traceback: str
) -> None:
    """Call the Celery-style error callbacks of a failed task, here and now.

    An errback that raises is logged; it never changes the task's outcome.
    """
    import logging

    for data in headers.get("link_error") or []:
        errback = Signature.from_dict(data)
        if not takes_request(errback):
            continue
        try:
            registry.get(errback.task)(request, exc, traceback, *errback.args, **errback.kwargs)
        except Exception:
            logging.getLogger("djtasks.worker").exception(
                "error callback %r of %s[%s] raised", errback, request.task, request.id
            )


def run_errback_eagerly(errback: Signature, result: Any) -> None:
    """Eager mode: call an error callback of a failed :class:`EagerResult`."""
    if takes_request(errback):
        from .request import Request

        request = Request(id=result.id, task=result.task_name, is_eager=True, called_directly=False)
        registry.get(errback.task)(
            request, result.result, result.traceback or "", *errback.args, **errback.kwargs
        )
    else:
        errback.apply_async((result.id,))


def signature(
    task: Any, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
) -> Signature:
    """Make a signature from a task, a task name or a stored dict."""
    if isinstance(task, dict | Signature):
        return Signature.from_dict(task).clone(args, kwargs, **options)
    return Signature(task, args, kwargs, options)


# -- chain -------------------------------------------------------------------------


class chain(Signature):  # noqa: N801 - Celery's name
    """Run tasks one after another, each getting the previous result first."""

    subtask_type = "chain"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        if len(tasks) == 1 and isinstance(tasks[0], list | tuple):
            tasks = tuple(tasks[0])
        flat: list[Signature] = []
        for t in tasks:
            if not isinstance(t, Signature):
                raise TypeError(f"chain() takes signatures (task.s(...)), not {t!r}")
            flat.extend(t.tasks if isinstance(t, chain) else [t])
        if not flat:
            raise ValueError("chain() needs at least one signature")
        self.tasks = flat
        self.task = "chain"
        self.args, self.kwargs, self.immutable = (), {}, False
        self.options = _checked_options("chain", options)

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``chain(...)()`` enqueues the chain, ``args`` prepended to its first step's."""
        return self.apply_async(args, kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "chain",
            "tasks": [t.to_dict() for t in self.tasks],
            "options": _plain(self.options),
            "subtask_type": "chain",
        }

    def clone(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> chain:
        new = copy.deepcopy(self)
        new.tasks[0] = new.tasks[0].clone(args, kwargs)
        new.options.update(_checked_options("chain", options))
        return new

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Signature):
            return chain(*self.tasks, other)
        return NotImplemented

    def freeze(self) -> None:
        task_id = self.options.pop("task_id", None)
        if task_id is not None:  # the id of the chain's result: its last step's
            self.last().options["task_id"] = str(task_id)
        for t in self.tasks:
            t.freeze()

    def _steps(self) -> list[Signature]:
        """The steps, with the chain's own options handed down: shared ones to
        every step, ``link`` to the last, ``link_error`` to each, the rest
        (countdown, eta, expires...) to the first."""
        opts = {k: v for k, v in self.options.items() if k != "task_id"}
        if not opts:
            return list(self.tasks)
        shared = {k: v for k, v in opts.items() if k in _SHARED}
        first = {k: v for k, v in opts.items() if k not in _SHARED and k not in _CALLBACKS}
        steps = []
        for i, step in enumerate(self.tasks):
            extra = dict(shared)
            if i == 0:
                extra.update(first)
            if i == len(self.tasks) - 1 and "link" in opts:
                extra["link"] = opts["link"]
            if "link_error" in opts:
                extra["link_error"] = opts["link_error"]
            steps.append(_with_defaults(step, extra) if extra else step)
        return steps

    def result(self) -> Any:
        results = [t.result() for t in self.tasks]
        for previous, current in itertools.pairwise(results):
            # A chord's result already leads back to its header: hang that on
            # the previous step, or the header would drop out of the walk.
            while getattr(current, "_parent", None) is not None:
                current = current._parent
            current._parent = previous
        return results[-1]

    def leaves(self) -> list[Signature]:
        return [leaf for t in self.tasks for leaf in t.leaves()]

    def last(self) -> Signature:
        return self.tasks[-1].last()

    def apply(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """Run the steps here, one after another; stop at the first that fails.

        Returns the last step's result (the failed one's if a step failed),
        with ``parent`` leading back through the earlier steps.
        """
        result: Any = None
        for step in self.clone(**options)._steps():
            if result is None:
                new = step.apply(args, kwargs)
            elif not result.successful():
                break
            else:  # a group's results come as one list, as from a worker
                new = step.apply((result.get(propagate=False),))
            new._parent = result
            result = new
        return result

    def plan(
        self,
        prefix: Sequence[Any] = (),
        chain_rest: Sequence[Signature] = (),
        parent: tuple[str | None, str | None] = (None, None),
    ) -> Plan:
        steps = self._steps()
        first, rest = steps[0], [*steps[1:], *chain_rest]
        if isinstance(first, group) and rest:
            # group | task is a chord: the rest runs once with every result.
            body = chain(*rest) if len(rest) > 1 else rest[0]
            return chord(first, body).plan(prefix, (), parent)
        return first.plan(prefix, rest, parent)


# -- group -------------------------------------------------------------------------


class group(Signature):  # noqa: N801 - Celery's name
    """Run tasks in parallel; their results come back in order in a GroupResult."""

    subtask_type = "group"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Signature):
            tasks = tuple(tasks[0])
        flat: list[Signature] = []
        for t in tasks:
            if isinstance(t, dict):
                t = Signature.from_dict(t)
            if not isinstance(t, Signature):
                raise TypeError(f"group() takes signatures (task.s(...)), not {t!r}")
            flat.extend(t.tasks if isinstance(t, group) else [t])
        self.tasks = flat
        self.task = "group"
        self.args, self.kwargs, self.immutable = (), {}, False
        self.options = _checked_options("group", options)

    @staticmethod
    def from_dict(data: Any) -> group:  # type: ignore[override]
        if isinstance(data, group):
            return data
        sig = Signature.from_dict(data)
        return sig if isinstance(sig, group) else group([sig])

    def __repr__(self) -> str:
        return f"group({', '.join(repr(t) for t in self.tasks)})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``group(...)()`` enqueues the group, ``args`` prepended to every member's."""
        return self.apply_async(args, kwargs)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Any:
        return iter(self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "group",
            "tasks": [t.to_dict() for t in self.tasks],
            "options": _plain(self.options),
            "subtask_type": "group",
        }

    def clone(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> group:
        new = copy.deepcopy(self)
        new.tasks = [t.clone(args, kwargs) for t in new.tasks]
        new.options.update(_checked_options("group", options))
        return new

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Signature):
            return chord(self, other)
        return NotImplemented

    def freeze(self) -> None:
        task_id = self.options.pop("task_id", None)  # a group's id is its group id
        self.options.setdefault("group_id", str(task_id or uuid7()))
        for t in self.tasks:
            t.freeze()

    def _members(self) -> list[Signature]:
        """The members, each with the group's options it does not set itself."""
        opts = {k: v for k, v in self.options.items() if k not in _INTERNAL and k != "task_id"}
        return [_with_defaults(t, opts) for t in self.tasks] if opts else list(self.tasks)

    @property
    def id(self) -> str | None:
        gid = self.options.get("group_id")
        return None if gid is None else str(gid)

    def result(self) -> Any:
        from .result import GroupResult

        return GroupResult(self.id, [t.result() for t in self.tasks])

    def leaves(self) -> list[Signature]:
        return [leaf for t in self.tasks for leaf in t.leaves()]

    def apply(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        from .result import GroupResult

        if not self.tasks:
            raise ValueError("cannot call an empty group")
        new = self.clone(**options)
        new.freeze()
        return GroupResult(new.id, [t.apply(args, kwargs) for t in new._members()])

    def apply_async(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        if not self.tasks:
            raise ValueError("cannot call an empty group")
        return super().apply_async(args, kwargs, **options)

    def plan(
        self,
        prefix: Sequence[Any] = (),
        chain_rest: Sequence[Signature] = (),
        parent: tuple[str | None, str | None] = (None, None),
        chord_id: str | None = None,
        body: Signature | None = None,
    ) -> Plan:
        if not self.tasks:
            raise ValueError("cannot call an empty group")
        if chain_rest:
            rest = chain(*chain_rest) if len(chain_rest) > 1 else chain_rest[0]
            return chord(self, rest).plan(prefix, (), parent)
        self.freeze()
        gid = self.id
        plan = Plan()
        members = self._members()
        for index, member in enumerate(members):
            # The member's *last* step is the one that counts for the group.
            tail = member.last()
            if isinstance(tail, group):
                raise TypeError(
                    f"group member {member!r} ends in a group, so it has no single result "
                    "for the group to wait for: end it with a task (for example a chord "
                    "whose body collects the inner group's results)"
                )
            tail.options.update(group_id=gid, group_index=index)
            if chord_id is not None:
                tail.options["chord"] = chord_id
            plan.extend(member.plan(prefix, (), parent))
        body_sig = body.last() if body is not None else None
        plan.groups.append(
            GroupRecord(
                uuid.UUID(gid),
                [str(m.last().id) for m in members],
                body.to_dict() if body is not None else None,
                body_sig.id if body_sig is not None else None,
            )
        )
        return plan


# -- chord -------------------------------------------------------------------------


class chord(Signature):  # noqa: N801 - Celery's name
    """``chord(header)(body)``: run the header group, then the body once with all results."""

    subtask_type = "chord"

    def __init__(self, header: Any, body: Signature | None = None, **options: Any) -> None:
        self.header = header if isinstance(header, group) else group(header)
        if body is not None and not isinstance(body, Signature):
            raise TypeError(f"a chord's body must be a signature, not {body!r}")
        self.body = body
        self.task = "chord"
        self.args, self.kwargs, self.immutable = (), {}, False
        self.options = _checked_options("chord", options)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def __call__(self, body: Signature | None = None, **options: Any) -> Any:  # type: ignore[override]
        """``chord(header)(body)`` enqueues the chord."""
        new = copy.deepcopy(self)
        if body is not None:
            new.body = body
        return new.apply_async(**options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "chord",
            "header": self.header.to_dict(),
            "body": self.body.to_dict() if self.body else None,
            "options": _plain(self.options),
            "subtask_type": "chord",
        }

    def clone(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> chord:
        new = copy.deepcopy(self)
        new.header = new.header.clone(args, kwargs)
        new.options.update(_checked_options("chord", options))
        return new

    def freeze(self) -> None:
        if self.body is None:
            raise ValueError("a chord needs a body: chord(header)(body) or chord(header, body)")
        task_id = self.options.pop("task_id", None)
        if task_id is not None:  # the id of the chord's result: its body's
            self.body.last().options["task_id"] = str(task_id)
        self.header.freeze()
        self.body.freeze()

    def _parts(self) -> tuple[group, Signature]:
        """Header and body with the chord's options handed down: callbacks to
        the body, shared options to both, the rest (countdown...) to the header."""
        if self.body is None:
            raise ValueError("a chord needs a body: chord(header)(body) or chord(header, body)")
        opts = {k: v for k, v in self.options.items() if k not in _INTERNAL}
        to_header = {k: v for k, v in opts.items() if k not in _CALLBACKS}
        to_body = {k: v for k, v in opts.items() if k in _SHARED or k in _CALLBACKS}
        header = _with_defaults(self.header, to_header) if to_header else self.header
        body = _with_defaults(self.body, to_body) if to_body else self.body
        return header, body

    @property
    def id(self) -> str | None:
        return self.body.last().id if self.body is not None else None

    def _body(self) -> Signature:
        if self.body is None:
            raise ValueError("a chord needs a body: chord(header)(body) or chord(header, body)")
        return self.body

    def result(self) -> Any:
        res = self._body().result()
        res._parent = self.header.result()
        return res

    def leaves(self) -> list[Signature]:
        return self.header.leaves() + self._body().leaves()

    def last(self) -> Signature:
        return self._body().last()

    def apply(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """Run the header here, then the body with its results, unless a member
        failed: then the result is a FAILURE with :class:`ChordError` naming it,
        and the body's error callbacks are called with its id."""
        from .result import EagerResult
        from .task import _run_links_eagerly

        new = self.clone(**options)
        new.freeze()
        header, body = new._parts()
        results = header.apply(args, kwargs)
        failed = next((r for r in _eager_leaves(results) if not r.successful()), None)
        if failed is None:
            result = body.apply((results.get(),))
        else:
            exc = ChordError(
                f"chord member {failed.task_name}[{failed.id}] failed: "
                f"{type(failed.result).__name__}: {failed.result}"
            )
            last = body.last()
            result = EagerResult(last.id or str(uuid7()), exc, states.FAILURE, task_name=last.task)
            _run_links_eagerly(result, None, body.options.get("link_error"))
        result._parent = results
        return result

    def plan(
        self,
        prefix: Sequence[Any] = (),
        chain_rest: Sequence[Signature] = (),
        parent: tuple[str | None, str | None] = (None, None),
    ) -> Plan:
        self.freeze()
        header, body = self._parts()
        body = chain(body, *chain_rest) if chain_rest else body
        if not header.tasks:
            # Nothing to wait for: the body runs now, with no results.
            return body.plan(([],), (), parent)
        gid = header.id
        return header.plan(prefix, (), parent, chord_id=gid, body=body)


def _eager_leaves(result: Any) -> Iterable[Any]:
    """The task results inside an eager group's result."""
    for r in getattr(result, "results", [result]):
        yield from (_eager_leaves(r) if hasattr(r, "results") else [r])


def chunks(task: Any, iterable: Iterable[Any], n: int) -> _Chunks:
    """Split ``iterable`` (of argument tuples) into tasks of ``n`` calls each."""
    return _Chunks(task, list(iterable), n)


class _Chunks:
    def __init__(self, task: Any, items: list[Any], n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"chunks() needs a chunk size >= 1, not {n!r}")
        self.task, self.items, self.n = _task_name(task), items, n

    def group(self) -> group:
        return group(
            [
                xstarmap(self.task, self.items[i : i + self.n])
                for i in range(0, len(self.items), self.n)
            ]
        )

    def apply_async(self, **options: Any) -> Any:
        return self.group().apply_async(**options)

    def delay(self) -> Any:
        return self.apply_async()

    def __call__(self, **options: Any) -> Any:
        """``add.chunks(items, 10)()`` enqueues the chunks, as in Celery."""
        return self.apply_async(**options)

    def apply(self, **options: Any) -> Any:
        return self.group().apply(**options)


def xmap(task: Any, iterable: Iterable[Any]) -> Signature:
    """One task that calls ``task`` on each item and returns the list of results."""
    return Signature("djtasks.canvas.map", ([_task_name(task), list(iterable)]))


def xstarmap(task: Any, iterable: Iterable[Any]) -> Signature:
    """Like :func:`xmap`, but each item is an argument tuple."""
    return Signature("djtasks.canvas.starmap", ([_task_name(task), [list(a) for a in iterable]]))


def _task_name(task: Any) -> str:
    """The name of a registered task (the map tasks look it up in the worker)."""
    name = getattr(task, "name", task)
    if not isinstance(name, str) or name not in registry:
        raise DjtasksError(f"map, starmap and chunks need a registered task, not {task!r}")
    return name


# -- worker side: what runs next -----------------------------------------------------


def after_success(headers: dict[str, Any], task_id: str, root_id: str | None, value: Any) -> Plan:
    """The rows a successful step leaves behind: its chain's next step and its links."""
    plan = Plan()
    parent = (task_id, root_id or task_id)
    rest = [Signature.from_dict(d) for d in headers.get("chain") or []]
    if rest:
        following = chain(*rest) if len(rest) > 1 else rest[0]
        plan.extend(following.plan((value,), (), parent))
    for link in headers.get("link") or []:
        plan.extend(Signature.from_dict(link).plan((value,), (), parent))
    return plan


class Skipped(NamedTuple):
    """A task of a workflow that will not run: written as a REVOKED row saying
    why, in its place in the workflow (and counted out of its chord, if any)."""

    name: str
    id: str
    reason: str
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    chord_id: str | None = None


def after_failure(
    headers: dict[str, Any], task_id: str, root_id: str | None, reason: str
) -> tuple[Plan, list[Skipped]]:
    """The error callbacks to enqueue (with the failed task's id; Celery-style
    ones are called in process by the worker instead), and the chain steps
    that will not run."""
    plan = Plan()
    parent = (task_id, root_id or task_id)
    for data in headers.get("link_error") or []:
        errback = Signature.from_dict(data)
        if not takes_request(errback):
            plan.extend(errback.plan((task_id,), (), parent))
    why = f"not run: an earlier step of its chain ({task_id}) failed: {reason}"
    return plan, not_run(headers, task_id, root_id, why)


def not_run(
    headers: dict[str, Any], task_id: str, root_id: str | None, reason: str
) -> list[Skipped]:
    """The rest of the chain of task ``task_id``, as steps that will not run."""
    skipped = []
    previous = task_id
    for data in headers.get("chain") or []:
        for leaf in Signature.from_dict(data).leaves():
            if leaf.id:
                skipped.append(
                    Skipped(
                        leaf.task,
                        leaf.id,
                        reason,
                        previous,
                        root_id or task_id,
                        leaf.options.get("group_id"),
                        leaf.options.get("chord"),
                    )
                )
                previous = leaf.id
    return skipped


def _map(task_name: str, items: list[Any]) -> list[Any]:
    func = registry.get(task_name)
    return [func(item) for item in items]


def _starmap(task_name: str, items: list[Any]) -> list[Any]:
    func = registry.get(task_name)
    return [func(*item) for item in items]


def register_builtin_tasks() -> None:
    """Register the tasks behind :func:`xmap`, :func:`xstarmap` and :func:`chunks`."""
    from .task import task

    if "djtasks.canvas.map" not in registry:
        task(name="djtasks.canvas.map")(_map)
        task(name="djtasks.canvas.starmap")(_starmap)


def write_plan(plan: Plan) -> None:
    """Insert a plan's groups and task rows in one transaction."""
    from . import queue

    queue.write_plan(plan)


#: Celery's aliases.
subtask = signature
maybe_signature = signature


def enqueue_many(signatures: Iterable[Signature], chunk_size: int = 1000) -> list[Any]:
    """Enqueue many task signatures at once: multi-row INSERTs in one
    transaction and one wake-up, instead of one round trip each.

    Only plain task signatures (``task.s(...)``); each is validated like
    ``apply_async``. Returns their results, in order.

    :raises TypeError: for a chain, group or chord (call those directly).
    """
    from . import queue
    from .conf import settings
    from .result import AsyncResult

    sigs = list(signatures)
    for sig in sigs:
        if type(sig) is not Signature:
            raise TypeError(f"enqueue_many() takes task signatures (task.s(...)), not {sig!r}")
    if settings.ALWAYS_EAGER:
        return [sig.apply_async() for sig in sigs]
    messages = [sig.plan().messages[0] for sig in sigs]
    queue.enqueue_bulk(messages, chunk_size)
    return [AsyncResult(m.id, task_name=m.name) for m in messages]
