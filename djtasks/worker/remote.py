"""The worker's side of remote control: read command rows, act, write replies.

``taskctl`` (see :mod:`djtasks.control`) inserts a :class:`~djtasks.models.ControlCommand`
and NOTIFYs ``djtasks_control``; each worker reads the unexpired commands
addressed to it (or to everyone), runs the handler named after the command
(``do_<command>``) and writes one :class:`~djtasks.models.ControlReply`:
``{"ok": value}``, or ``{"error": message}`` if the handler refused.

Handlers run on the worker's loop thread, between claims, so they may touch
the worker's state directly. Expiry is judged by the database's clock (as the
sender set it), so a skewed host clock neither replays old commands nor drops
new ones.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError
from django.db.models.functions import Now
from django.utils import timezone

from .. import queue, signals, states
from ..registry import tasks as registry
from .executor import send

if TYPE_CHECKING:
    from .consumer import Worker

logger = logging.getLogger("djtasks.worker")

#: The NOTIFY channel for control commands and pause/resume.
CONTROL_CHANNEL = "djtasks_control"

#: At most this many rows in an ``inspect scheduled`` / ``inspect revoked`` reply.
INSPECT_ROWS = 100


class RemoteControl:
    """Answers control commands for one worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        # Ids of the unexpired commands already handled (or that were there
        # before this worker started); None until the first poll.
        self.seen: set[str] | None = None
        # revoke --terminate of a task still waiting in a child's pipe: killed
        # once it starts running.
        self.to_terminate: set[str] = set()

    def poll(self) -> None:
        """Run every command for this worker not yet answered."""
        from ..models import ControlCommand

        commands = list(
            ControlCommand.objects.using(queue.db_alias())
            .filter(expires_at__gt=Now())
            .order_by("created_at")
        )
        current = {str(c.id) for c in commands}
        if self.seen is None:
            # Commands sent before this worker started are not for it.
            self.seen = current
            return
        self.seen &= current  # forget expired ones: the set stays small
        for command in commands:
            key = str(command.id)
            if key in self.seen:
                continue
            self.seen.add(key)
            if command.destination and self.worker.name not in command.destination:
                continue
            self._answer(command)
        if self.to_terminate:
            self._terminate_started()

    def _answer(self, command: Any) -> None:
        from ..models import ControlReply

        handler: Callable[..., Any] | None = getattr(self, f"do_{command.command}", None)
        if handler is None:
            reply: dict[str, Any] = {"error": f"unknown command {command.command!r}"}
        else:
            try:
                reply = {"ok": handler(**(command.arguments or {}))}
            except Exception as exc:  # a bad command must never stop the worker
                logger.warning("control command %s failed: %s", command.command, exc)
                reply = {"error": f"{type(exc).__name__}: {exc}"}
        logger.info("control: %s %s → %s", command.command, command.arguments or "", reply)
        try:
            ControlReply.objects.using(queue.db_alias()).create(
                command=command, worker=self.worker.name, reply=reply
            )
        except IntegrityError:
            # Answered already (a second poll raced this one), or the sender
            # gave up and deleted the command meanwhile.
            pass

    # -- inspect ---------------------------------------------------------------

    def do_ping(self) -> str:
        return "pong"

    def do_stats(self) -> dict[str, Any]:
        return self.worker.stats()

    def do_active(self) -> list[dict[str, Any]]:
        return self.worker.active()

    def do_reserved(self) -> list[dict[str, Any]]:
        return self.worker.reserved()

    def do_registered(self) -> list[str]:
        return registry.names()

    def do_scheduled(self) -> list[dict[str, Any]]:
        """Waiting rows of this worker's queues whose ``eta`` is still ahead.

        Unlike Celery's, they are not held by any worker: every worker that
        consumes the queue lists them, and whichever is free claims each one
        when it is due.
        """
        from ..models import TaskRecord

        rows = (
            TaskRecord.objects.using(queue.db_alias())
            .filter(
                state__in=(states.PENDING, states.RETRY),
                queue__in=self.worker.queues,
                eta__gt=self.worker.now(),
            )
            .order_by("eta", "id")
            .values("id", "name", "queue", "priority", "state", "eta", "retries")[:INSPECT_ROWS]
        )
        return [{**row, "id": str(row["id"]), "eta": row["eta"].isoformat()} for row in rows]

    def do_revoked(self) -> list[dict[str, Any]]:
        """The most recently revoked rows of this worker's queues."""
        from ..models import TaskRecord

        rows = (
            TaskRecord.objects.using(queue.db_alias())
            .filter(state=states.REVOKED, queue__in=self.worker.queues)
            .order_by("-done_at", "-id")
            .values("id", "name", "queue", "done_at", "exc_message")[:INSPECT_ROWS]
        )
        return [
            {
                "id": str(r["id"]),
                "name": r["name"],
                "queue": r["queue"],
                "revoked_at": r["done_at"].isoformat() if r["done_at"] else None,
                "reason": r["exc_message"],
            }
            for r in rows
        ]

    # -- control ---------------------------------------------------------------

    def do_shutdown(self) -> str:
        running = len(self.worker.pool.running())
        self.worker.begin_warm_shutdown("remote control: taskctl control shutdown")
        return f"shutting down after {running} running task(s)"

    def do_pool_grow(self, n: int = 1) -> str:
        n = _count(n)
        size = self.worker.grow(n)
        return f"pool grew by {n} to {size}"

    def do_pool_shrink(self, n: int = 1) -> str:
        n = _count(n)
        before = self.worker.pool.concurrency
        size = self.worker.shrink(n)
        if size == before:
            return f"pool stays at {size} (it never shrinks below 1)"
        return f"pool shrank by {before - size} to {size}"

    def do_add_consumer(self, queue: str) -> str:
        if not self.worker.add_queue(queue):
            return f"already consuming from {queue}"
        paused = " (paused: no claims until it is resumed)" if queue in self.worker.paused else ""
        return f"now consuming from {queue}{paused}"

    def do_cancel_consumer(self, queue: str) -> str:
        if queue not in self.worker.queues:
            return f"not consuming from {queue}"
        if not self.worker.remove_queue(queue):
            raise ValueError(
                f"{queue} is this worker's only queue; add another before cancelling it"
            )
        return f"no longer consuming from {queue}"

    def do_rate_limit(self, task_name: str, rate: str = "") -> str:
        # The sender stored the new rate in the TaskType row; re-read it now.
        self.worker.refresh_runtime_state()
        if task_name not in registry:
            return f"{task_name} is not registered here (the stored limit applies where it is)"
        task = registry.get(task_name)
        if task.rate_limit is None and task.concurrency_limit is None:
            return (
                f"{task_name}: not under the cluster-wide limiter (it declares neither "
                "rate_limit nor concurrency_limit)"
            )
        limit = self.worker.limits.get(task_name)
        if limit is None or limit.rate is None:
            return f"{task_name}: no rate limit"
        stored = queue.task_types().get(task_name)
        rate_now = (
            stored.rate_limit
            if stored is not None and stored.rate_limit
            else registry.get(task_name).rate_limit
        )
        return f"{task_name}: rate limit {rate_now} (cluster-wide)"

    def do_time_limit(
        self, task_name: str, soft: float | None = None, hard: float | None = None
    ) -> str:
        self.worker.refresh_runtime_state()
        if task_name not in registry:
            return f"{task_name} is not registered here (the stored limits apply where it is)"
        task = registry.get(task_name)
        o_soft, o_hard = self.worker.overrides.get(task_name, (None, None))
        soft_now = o_soft or task.soft_time_limit
        hard_now = o_hard or task.time_limit
        note = ""
        if self.worker.options.pool != "prefork" and hard_now:
            note = f" (the {self.worker.options.pool} pool enforces the soft limit only)"
        return (
            f"{task_name}: soft {_seconds(soft_now)}, hard {_seconds(hard_now)} for the "
            f"next runs{note}"
        )

    def do_revoke(self, task_ids: list[str], terminate: bool = False) -> dict[str, list[str]]:
        """Stop the listed tasks if they run here (``revoke --terminate``).

        The sender has already revoked the ones that had not started. Replies
        with the ids ``terminated`` (they end REVOKED) and those ``terminating``:
        handed to a child that is still busy with another task, so killed as
        soon as they start.
        """
        if not terminate:
            return {"terminated": [], "terminating": []}
        if self.worker.options.pool != "prefork":
            raise ValueError(
                f"the {self.worker.options.pool} pool cannot terminate a "
                "running task (only prefork can)"
            )
        held = {j.claimed.id for j in self.worker.pool.running()}
        terminated = self._terminate(task_ids)
        terminating = [t for t in task_ids if t in held and t not in terminated]
        self.to_terminate.update(terminating)
        return {"terminated": terminated, "terminating": terminating}

    def _terminate(self, task_ids: list[str]) -> list[str]:
        from .consumer import _request

        running = {j.claimed.id: j.claimed for j in self.worker.pool.running()}
        done = []
        for task_id in task_ids:
            if self.worker.terminate(task_id):
                done.append(task_id)
                claimed = running[task_id]
                send(
                    signals.task_revoked,
                    sender=registry._tasks.get(claimed.name),
                    request=_request(claimed, self.worker.name),
                    terminated=True,
                    signum=signal.SIGKILL,
                    expired=False,
                )
        # A dead child (killed just now, or lost) hands back the jobs queued
        # behind its task: those asked for end REVOKED without running, the
        # rest go back to the queue, as the worker would do with them next.
        wanted = set(task_ids)
        give_back = []
        for job in self.worker.pool.take_unstarted():  # type: ignore[attr-defined]
            if job.claimed.id in wanted:
                self.worker.pending.append(_revoked_unstarted(job.claimed))
                done.append(job.claimed.id)
            else:
                give_back.append(job.claimed)
        if give_back:
            queue.requeue_running(self.worker.name, give_back)
        return done

    def _terminate_started(self) -> None:
        held = {j.claimed.id for j in self.worker.pool.running()}
        self.to_terminate &= held  # finished meanwhile (or handed back): nothing to kill
        for task_id in self._terminate(sorted(self.to_terminate)):
            self.to_terminate.discard(task_id)

    # -- pause / resume ----------------------------------------------------------

    def do_pause(self, queue: str) -> str:
        # The sender stored the PausedQueue row; re-read it now and give back
        # what was claimed from that queue but not started, for when it resumes.
        self.worker.refresh_runtime_state()
        if queue not in self.worker.queues:
            return f"not consuming from {queue}"
        released = self._release_paused()
        return f"stopped claiming from {queue}" + (
            f"; returned {released} claimed task(s) to it" if released else ""
        )

    def do_resume(self, queue: str) -> str:
        self.worker.refresh_runtime_state()
        if queue not in self.worker.queues:
            return f"not consuming from {queue}"
        if queue in self.worker.paused:
            return f"{queue} is still paused"
        return f"claiming from {queue} again"

    def _release_paused(self) -> int:
        buffer = self.worker.buffer
        drop = [c for c in buffer if c.queue in self.worker.paused]
        if not drop:
            return 0
        keep = [c for c in buffer if c.queue not in self.worker.paused]
        buffer.clear()
        buffer.extend(keep)
        return queue.release(self.worker.name, drop)


def _revoked_unstarted(claimed: queue.Claimed) -> queue.Outcome:
    return queue.Outcome(
        claimed.id,
        claimed.attempt,
        states.REVOKED,
        timezone.now(),
        exc_type=queue.REVOKED_ERROR,
        exc_message="revoked before it started (revoke --terminate)",
        task_name=claimed.name,
    )


def _count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, not {n!r}")
    return n


def _seconds(value: float | None) -> str:
    return f"{value:g} s" if value else "none"
