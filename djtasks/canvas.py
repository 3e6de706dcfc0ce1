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
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import serialization, states
from .exceptions import DjtasksError
from .ids import uuid7
from .registry import tasks as registry

#: Call options a signature may carry into ``Task.build_message``.
CALL_OPTIONS = frozenset({
    "countdown", "eta", "expires", "queue", "priority", "task_id", "serializer", "headers",
    "ignore_result", "acks_late", "time_limit", "soft_time_limit", "unique_key",
    "unique_for", "link", "link_error",
})
#: Options the canvas sets on signatures for its own bookkeeping.
_INTERNAL = frozenset({"group_id", "group_index", "chord", "parent_id", "root_id"})


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

    def __init__(self, task: Any = None, args: Iterable[Any] = (),
                 kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                 immutable: bool = False, **extra_options: Any) -> None:
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
        self.options = {**(options or {}), **extra_options}
        unknown = set(self.options) - CALL_OPTIONS - _INTERNAL
        if unknown:
            raise TypeError(f"unknown option(s) for {name}: {', '.join(sorted(unknown))}")
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
        return {"task": self.task, "args": _plain(list(self.args)),
                "kwargs": _plain(self.kwargs), "options": _plain(self.options),
                "immutable": self.immutable, "subtask_type": self.subtask_type}

    __json__ = to_dict

    @staticmethod
    def from_dict(data: dict[str, Any] | Signature) -> Signature:
        """Rebuild a signature (of any canvas type) from :meth:`to_dict` output."""
        if isinstance(data, Signature):
            return data
        if not isinstance(data, dict) or "task" not in data and "tasks" not in data:
            raise TypeError(f"not a signature: {data!r}")
        kind = data.get("subtask_type")
        if kind == "chain":
            return chain(*[Signature.from_dict(t) for t in data["tasks"]],
                         **_unplain(data.get("options") or {}))
        if kind == "group":
            return group([Signature.from_dict(t) for t in data["tasks"]],
                         **_unplain(data.get("options") or {}))
        if kind == "chord":
            return chord(group.from_dict(data["header"]), Signature.from_dict(data["body"]),
                         **_unplain(data.get("options") or {}))
        return Signature(data["task"], _unplain(data.get("args") or []),
                         _unplain(data.get("kwargs") or {}), _unplain(data.get("options") or {}),
                         immutable=bool(data.get("immutable")))

    def clone(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> Signature:
        """A copy with ``args`` prepended (unless immutable), kwargs merged, options updated."""
        new = copy.deepcopy(self)
        if not self.immutable:
            new.args = tuple(args) + self.args
            new.kwargs = {**self.kwargs, **(kwargs or {})}
        new.options.update(options)
        return new

    def set(self, **options: Any) -> Signature:
        """Set call options on this signature (returns it, for chaining)."""
        unknown = set(options) - CALL_OPTIONS - _INTERNAL
        if unknown:
            raise TypeError(f"unknown option(s) for {self.task}: {', '.join(sorted(unknown))}")
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = bool(immutable)

    def link(self, callback: Signature) -> Signature:
        """Call ``callback`` with this task's result when it succeeds."""
        self.options["link"] = [*self.options.get("link", []), _as_signature(callback).to_dict()]
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Call ``errback`` with this task's id when it fails."""
        self.options["link_error"] = [*self.options.get("link_error", []),
                                      _as_signature(errback).to_dict()]
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

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> Any:
        """Enqueue (all rows of the workflow in one transaction); return its result handle."""
        from .conf import settings

        sig = self.clone(args, kwargs, **options)
        sig.freeze()
        if settings.ALWAYS_EAGER:
            return sig.apply()
        write_plan(sig.plan())
        return sig.result()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task function now, in this process."""
        sig = self.clone(args, kwargs)
        return registry.get(self.task)(*sig.args, **sig.kwargs)

    def apply(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
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

    def plan(self, prefix: Sequence[Any] = (), chain_rest: Sequence[Signature] = (),
             parent: tuple[str | None, str | None] = (None, None)) -> Plan:
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
        message = task.build_message(args, self.kwargs, headers=headers, group_id=group_id,
                                     parent_id=parent_id, root_id=root_id, **opts)
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


def callbacks_to_dicts(value: Any, what: str = "link") -> list[dict[str, Any]]:
    try:
        return [s.to_dict() for s in callbacks_to_signatures(value)]
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from None


def signature(task: Any, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> Signature:
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
        self.options = dict(options)

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``chain(...)()`` enqueues the chain, ``args`` prepended to its first step's."""
        return self.apply_async(args, kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"task": "chain", "tasks": [t.to_dict() for t in self.tasks],
                "options": _plain(self.options), "subtask_type": "chain"}

    def clone(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> chain:
        new = copy.deepcopy(self)
        new.tasks[0] = new.tasks[0].clone(args, kwargs)
        new.options.update(options)
        return new

    def set(self, **options: Any) -> chain:
        self.options.update(options)
        return self

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Signature):
            return chain(*self.tasks, other)
        return NotImplemented

    def freeze(self) -> None:
        for t in self.tasks:
            t.freeze()

    def result(self) -> Any:
        results = [t.result() for t in self.tasks]
        for previous, current in zip(results, results[1:], strict=False):
            current._parent = previous
        return results[-1]

    def leaves(self) -> list[Signature]:
        return [leaf for t in self.tasks for leaf in t.leaves()]

    def last(self) -> Signature:
        return self.tasks[-1].last()

    def apply(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        result = self.tasks[0].apply(args, kwargs)
        for t in self.tasks[1:]:
            if result.state != states.SUCCESS:
                break
            result = t.apply((result.result,))
        return result

    def plan(self, prefix: Sequence[Any] = (), chain_rest: Sequence[Signature] = (),
             parent: tuple[str | None, str | None] = (None, None)) -> Plan:
        first, rest = self.tasks[0], [*self.tasks[1:], *chain_rest]
        if self.options:
            first = first.clone(**{k: v for k, v in self.options.items()
                                   if k in CALL_OPTIONS - {"task_id"}})
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
        self.options = dict(options)

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
        return {"task": "group", "tasks": [t.to_dict() for t in self.tasks],
                "options": _plain(self.options), "subtask_type": "group"}

    def clone(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> group:
        new = copy.deepcopy(self)
        new.tasks = [t.clone(args, kwargs) for t in new.tasks]
        new.options.update(options)
        return new

    def set(self, **options: Any) -> group:
        self.options.update(options)
        return self

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Signature):
            return chord(self, other)
        return NotImplemented

    def freeze(self) -> None:
        self.options.setdefault("group_id", str(uuid7()))
        for t in self.tasks:
            t.freeze()

    @property
    def id(self) -> str | None:
        gid = self.options.get("group_id")
        return None if gid is None else str(gid)

    def result(self) -> Any:
        from .result import GroupResult

        return GroupResult(self.id, [t.result() for t in self.tasks])

    def leaves(self) -> list[Signature]:
        return [leaf for t in self.tasks for leaf in t.leaves()]

    def apply(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        from .result import GroupResult

        if not self.tasks:
            raise ValueError("cannot call an empty group")
        self.freeze()
        return GroupResult(self.id, [t.apply(args, kwargs) for t in self.tasks])

    def apply_async(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> Any:
        if not self.tasks:
            raise ValueError("cannot call an empty group")
        return super().apply_async(args, kwargs, **options)

    def plan(self, prefix: Sequence[Any] = (), chain_rest: Sequence[Signature] = (),
             parent: tuple[str | None, str | None] = (None, None), chord_id: str | None = None,
             body: Signature | None = None) -> Plan:
        if not self.tasks:
            raise ValueError("cannot call an empty group")
        if chain_rest:
            rest = chain(*chain_rest) if len(chain_rest) > 1 else chain_rest[0]
            return chord(self, rest).plan(prefix, (), parent)
        self.freeze()
        gid = self.id
        plan = Plan()
        for index, member in enumerate(self.tasks):
            # The member's *last* step is the one that counts for the group.
            tail = member.last()
            tail.options.update(group_id=gid, group_index=index)
            if chord_id is not None:
                tail.options["chord"] = chord_id
            plan.extend(member.plan(prefix, (), parent))
        body_sig = body.last() if body is not None else None
        plan.groups.append(GroupRecord(
            uuid.UUID(gid), [str(m.last().id) for m in self.tasks],
            body.to_dict() if body is not None else None,
            body_sig.id if body_sig is not None else None))
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
        self.options = dict(options)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def __call__(self, body: Signature | None = None, **options: Any) -> Any:  # type: ignore[override]
        """``chord(header)(body)`` enqueues the chord."""
        new = copy.deepcopy(self)
        if body is not None:
            new.body = body
        return new.apply_async(**options)

    def to_dict(self) -> dict[str, Any]:
        return {"task": "chord", "header": self.header.to_dict(),
                "body": self.body.to_dict() if self.body else None,
                "options": _plain(self.options), "subtask_type": "chord"}

    def clone(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> chord:
        new = copy.deepcopy(self)
        new.header = new.header.clone(args, kwargs)
        new.options.update(options)
        return new

    def freeze(self) -> None:
        if self.body is None:
            raise ValueError("a chord needs a body: chord(header)(body) or chord(header, body)")
        self.header.freeze()
        self.body.freeze()

    @property
    def id(self) -> str | None:
        return self.body.last().id if self.body is not None else None

    def result(self) -> Any:
        assert self.body is not None
        res = self.body.result()
        res._parent = self.header.result()
        return res

    def leaves(self) -> list[Signature]:
        assert self.body is not None
        return self.header.leaves() + self.body.leaves()

    def last(self) -> Signature:
        assert self.body is not None
        return self.body.last()

    def apply(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        assert self.body is not None
        header = self.header.apply(args, kwargs)
        return self.body.apply((header.get(),))

    def plan(self, prefix: Sequence[Any] = (), chain_rest: Sequence[Signature] = (),
             parent: tuple[str | None, str | None] = (None, None)) -> Plan:
        self.freeze()
        assert self.body is not None
        body = chain(self.body, *chain_rest) if chain_rest else self.body
        if not self.header.tasks:
            # Nothing to wait for: the body runs now, with no results.
            return body.plan(([],), (), parent)
        gid = self.header.id
        return self.header.plan(prefix, (), parent, chord_id=gid, body=body)


def chunks(task: Any, iterable: Iterable[Any], n: int) -> _Chunks:
    """Split ``iterable`` (of argument tuples) into tasks of ``n`` calls each."""
    return _Chunks(task, list(iterable), n)


class _Chunks:
    def __init__(self, task: Any, items: list[Any], n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"chunks() needs a chunk size >= 1, not {n!r}")
        self.task, self.items, self.n = getattr(task, "name", task), items, n

    def group(self) -> group:
        return group([xstarmap(self.task, self.items[i:i + self.n])
                      for i in range(0, len(self.items), self.n)])

    def apply_async(self, **options: Any) -> Any:
        return self.group().apply_async(**options)

    def delay(self) -> Any:
        return self.apply_async()


def xmap(task: Any, iterable: Iterable[Any]) -> Signature:
    """One task that calls ``task`` on each item and returns the list of results."""
    return Signature("djtasks.canvas.map", ([getattr(task, "name", task), list(iterable)]))


def xstarmap(task: Any, iterable: Iterable[Any]) -> Signature:
    """Like :func:`xmap`, but each item is an argument tuple."""
    return Signature("djtasks.canvas.starmap",
                     ([getattr(task, "name", task), [list(a) for a in iterable]]))


# -- worker side: what runs next -----------------------------------------------------

def after_success(headers: dict[str, Any], task_id: str, root_id: str | None,
                  value: Any) -> Plan:
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


def after_failure(headers: dict[str, Any], task_id: str, root_id: str | None,
                  reason: str) -> tuple[Plan, list[tuple[str, str, str]]]:
    """The error callbacks to call, and the chain steps that will not run
    (name, id, reason) — recorded as REVOKED rows so their results say why."""
    plan = Plan()
    parent = (task_id, root_id or task_id)
    for errback in headers.get("link_error") or []:
        plan.extend(Signature.from_dict(errback).plan((task_id,), (), parent))
    skipped = []
    for data in headers.get("chain") or []:
        for leaf in Signature.from_dict(data).leaves():
            if leaf.id:
                skipped.append((leaf.task, leaf.id,
                                f"not run: an earlier step of its chain ({task_id}) "
                                f"failed: {reason}"))
    return plan, skipped


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
