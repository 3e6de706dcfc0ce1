"""The context of the task run in progress: ``self.request`` inside a task."""

from __future__ import annotations

import datetime as dt
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """What a running task knows about its own call.

    ``called_directly`` is true when the task function was simply called
    (``my_task(1, 2)``) rather than run by a worker or by ``apply()``.
    """

    id: str | None = None
    task: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    attempt: int = 0
    queue: str | None = None
    priority: int | None = None
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    hostname: str | None = None
    is_eager: bool = False
    called_directly: bool = True
    ignore_result: bool = False
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None

    @classmethod
    def for_claimed(
        cls,
        claimed: Any,
        hostname: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> Request:
        """The request of a row a worker claimed (a ``queue.Claimed``)."""
        return cls(
            id=claimed.id,
            task=claimed.name,
            args=list(args or []),
            kwargs=dict(kwargs or {}),
            retries=claimed.retries,
            attempt=claimed.attempt,
            queue=claimed.queue,
            priority=claimed.priority,
            eta=None,
            headers=claimed.headers,
            hostname=hostname,
            called_directly=False,
            ignore_result=claimed.ignore_result,
            parent_id=claimed.parent_id,
            root_id=claimed.root_id,
            group_id=claimed.group_id,
        )

    @property
    def delivery_info(self) -> dict[str, Any]:
        return {"routing_key": self.queue, "priority": self.priority}


#: The request of the task running in this thread or coroutine, if any.
current_request: ContextVar[Request | None] = ContextVar("djtasks_request", default=None)
