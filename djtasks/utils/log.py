"""Loggers for task code whose records carry the running task's name and id."""

from __future__ import annotations

import logging
from typing import Any

from ..request import current_request


class TaskLoggerAdapter(logging.LoggerAdapter):
    """Adds ``task_name`` and ``task_id`` to every record (``"???"`` outside a task)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        req = current_request.get()
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("task_name", req.task if req else "???")
        extra.setdefault("task_id", req.id if req else "???")
        kwargs["extra"] = extra
        return msg, kwargs


def get_task_logger(name: str) -> TaskLoggerAdapter:
    """Return a logger for task code; use ``%(task_name)s`` / ``%(task_id)s`` in formats."""
    return TaskLoggerAdapter(logging.getLogger(name), {})
