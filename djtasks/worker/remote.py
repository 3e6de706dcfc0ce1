"""The worker's side of remote control: read command rows, act, write replies.

``taskctl`` (see :mod:`djtasks.control`) inserts a :class:`~djtasks.models.ControlCommand`
and NOTIFYs ``djtasks_control``; each worker reads the commands addressed to
it (or to everyone) since it started, runs the handler named after the
command and writes one :class:`~djtasks.models.ControlReply`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError
from django.utils import timezone

from .. import queue
from ..registry import tasks as registry

if TYPE_CHECKING:
    from .consumer import Worker

logger = logging.getLogger("djtasks.worker")

#: The NOTIFY channel for control commands and pause/resume.
CONTROL_CHANNEL = "djtasks_control"


class RemoteControl:
    """Answers control commands for one worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.since = timezone.now()
        self.seen: set[str] = set()

    def poll(self) -> None:
        """Run every command for this worker not yet answered."""
        from ..models import ControlCommand

        now = timezone.now()
        commands = (ControlCommand.objects.using(queue.db_alias())
                    .filter(created_at__gte=self.since, expires_at__gt=now)
                    .order_by("created_at"))
        for command in commands:
            key = str(command.id)
            if key in self.seen:
                continue
            self.seen.add(key)
            if command.destination and self.worker.name not in command.destination:
                continue
            self._answer(command)

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
        try:
            ControlReply.objects.using(queue.db_alias()).create(
                command=command, worker=self.worker.name, reply=reply)
        except IntegrityError:
            pass  # answered already (a second poll raced this one)

    # -- handlers: one per command -------------------------------------------

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
