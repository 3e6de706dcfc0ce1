"""Buttons of the admin that act on a task, a queue or a worker.

The admin draws a button for every registered :class:`Control` whose target
kind matches the row (the task detail page for ``"task"``, the dashboard's
queue and worker tables for ``"queue"`` and ``"worker"``), asks for
confirmation on a page of its own, checks the user's permission and calls
:attr:`Control.run`. Built in: revoke and terminate (tasks), pause and resume
(queues), grow, shrink and shut down (workers). More register here and appear
in the admin without other changes::

    from djtasks import controls

    controls.register(controls.Control(
        name="pause", label="Pause", target="queue",
        permission="djtasks.change_taskrecord",
        question="Pause queue {target}? Workers stop claiming from it.",
        run=lambda target, user: f"Queue {target} paused.",
    ))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from django.utils import timezone

from . import queue, states
from .models import TaskRecord

Target = Literal["task", "queue", "worker"]


@dataclass(frozen=True)
class Control:
    """One admin button.

    :param name: a slug, unique, used in the control's URL.
    :param label: the button's text.
    :param target: what it acts on: ``"task"`` (an id), ``"queue"`` or ``"worker"`` (a name).
    :param permission: the Django permission the user needs (``"app.codename"``).
    :param question: the confirmation question; ``{target}`` is replaced.
    :param run: ``run(target, user) -> message`` does it and says what happened;
        raise :class:`ControlError` to report a refusal.
    :param applies: ``applies(row) -> bool`` hides the button on rows it cannot
        act on (``row`` is the task's or worker's values, or the queue's name).
    :param danger: draw it as a destructive action.
    """

    name: str
    label: str
    target: Target
    permission: str
    question: str
    run: Callable[[str, Any], str]
    applies: Callable[[Any], bool] = field(default=lambda row: True)
    danger: bool = False


class ControlError(Exception):
    """A control could not do what was asked; the message is shown to the user."""


_controls: dict[str, Control] = {}


def register(control: Control) -> Control:
    """Add (or replace, by name) a control; return it."""
    if control.target not in ("task", "queue", "worker"):
        raise ValueError(
            f"control target must be 'task', 'queue' or 'worker', not {control.target!r}"
        )
    _controls[control.name] = control
    return control


def unregister(name: str) -> None:
    _controls.pop(name, None)


def get(name: str) -> Control | None:
    return _controls.get(name)


def for_target(target: Target, user: Any = None, row: Any = None) -> list[Control]:
    """The controls for ``target`` rows, only those ``user`` may use and that apply to ``row``."""
    found = []
    for control in _controls.values():
        if control.target != target:
            continue
        if user is not None and not user.has_perm(control.permission):
            continue
        if row is not None and not control.applies(row):
            continue
        found.append(control)
    return found


# -- the built-in ones ----------------------------------------------------------------

#: States ``revoke`` can still stop (it does not touch a running task).
REVOCABLE_STATES = (states.PENDING, states.RETRY, states.RECEIVED)


def _revoke(target: str, user: Any) -> str:
    revoked = queue.revoke([target], f"revoked in the admin by {user}", timezone.now())
    if not revoked:
        state = (
            TaskRecord.objects.using(queue.db_alias())
            .filter(pk=target)
            .values_list("state", flat=True)
            .first()
        )
        raise ControlError(
            f"Task {target} was not revoked: it is "
            f"{state or 'not in the table'}, and only a task that has "
            "not started can be revoked."
        )
    return f"Task {target} revoked."


def _remote(send: Callable[[], Any], done: str) -> str:
    from .control import RemoteControlError

    try:
        send()
    except RemoteControlError as exc:
        raise ControlError(str(exc)) from exc
    return done


def _terminate(target: str, user: Any) -> str:
    from .control import revoke

    report = revoke([target], terminate=True, reason=f"terminated in the admin by {user}")
    if report.revoked:
        return f"Task {target} had not started: revoked."
    if report.terminated or report.terminating:
        return f"Task {target} terminated."
    raise ControlError(f"Task {target} was not terminated: {report.failed.get(target, '?')}")


def _register_remote_controls() -> None:
    from . import control

    # Sent without waiting for replies (timeout=0): workers act within a
    # second (at once on PostgreSQL) and the dashboard shows the result.
    for name, label, target, question, send, done in (
        (
            "pause",
            "Pause",
            "queue",
            "Pause queue {target}? Workers stop claiming from it "
            "until it is resumed; running tasks finish.",
            lambda t, u: control.pause(t, by=str(u), timeout=0),
            "Queue {t} paused.",
        ),
        (
            "resume",
            "Resume",
            "queue",
            "Resume queue {target}? Workers claim from it again.",
            lambda t, u: control.resume(t, timeout=0),
            "Queue {t} resumed.",
        ),
        (
            "pool_grow",
            "Grow pool",
            "worker",
            "Add one process to worker {target}'s pool?",
            lambda t, u: control.pool_grow(1, [t], timeout=0),
            "Worker {t} asked to grow.",
        ),
        (
            "pool_shrink",
            "Shrink pool",
            "worker",
            "Remove one process from worker {target}'s pool (after its task)?",
            lambda t, u: control.pool_shrink(1, [t], timeout=0),
            "Worker {t} asked to shrink.",
        ),
        (
            "shutdown",
            "Shut down",
            "worker",
            "Shut worker {target} down? It finishes its "
            "running tasks, returns the rest to the queue and exits.",
            lambda t, u: control.shutdown([t], timeout=0),
            "Worker {t} asked to shut down.",
        ),
    ):
        register(
            Control(
                name=name,
                label=label,
                target=target,  # type: ignore[arg-type]
                permission="djtasks.change_taskrecord",
                question=question,
                run=lambda t, u, send=send, done=done: _remote(
                    lambda: send(t, u), done.format(t=t)
                ),
                danger=name == "shutdown",
            )
        )
    register(
        Control(
            name="terminate",
            label="Revoke and terminate",
            target="task",
            permission="djtasks.change_taskrecord",
            question="Terminate task {target}? The worker running it kills its process; the "
            "task ends REVOKED.",
            run=_terminate,
            applies=lambda row: row.get("state") == states.STARTED,
            danger=True,
        )
    )


register(
    Control(
        name="revoke",
        label="Revoke",
        target="task",
        permission="djtasks.change_taskrecord",
        question="Revoke task {target}? It will not run. A task that has already "
        "started is not stopped.",
        run=_revoke,
        applies=lambda row: row.get("state") in REVOCABLE_STATES,
        danger=True,
    )
)

_register_remote_controls()
