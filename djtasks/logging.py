"""A JSON log formatter: one object per line, with the task's id, name, state,
runtime and worker when the record is about a task.

::

    LOGGING = {
        "version": 1,
        "formatters": {"json": {"()": "djtasks.logging.JSONFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {"djtasks": {"handlers": ["console"], "level": "INFO"}},
    }

A line looks like::

    {"timestamp": "2025-03-01T12:00:00.123456+00:00", "level": "INFO",
     "logger": "djtasks.worker", "message": "shop.tasks.send[0195…] SUCCESS in 0.0123s",
     "task_id": "0195…", "task_name": "shop.tasks.send", "state": "SUCCESS",
     "runtime": 0.0123, "worker": "4242@web-1", "process": 4242}

The task fields come from the record's ``extra`` (the worker's outcome lines
carry all five), else from the task running in this thread or process, so
the records of :func:`djtasks.utils.log.get_task_logger` and of any logger
called inside a task get the id, name and worker too. Other ``extra`` values
are added as they are (or as text when JSON cannot hold them).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from .request import current_request

#: The task fields, in the order they are written.
TASK_FIELDS = ("task_id", "task_name", "state", "runtime", "worker")
# Attributes every LogRecord has: not "extra".
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_UNKNOWN = "???"  # what get_task_logger puts outside a task


class JSONFormatter(logging.Formatter):
    """Format records as JSON objects, one per line.

    :param static: fields added to every line (e.g. ``{"service": "shop"}``).
    :param extra: add the record's other ``extra`` values (default True).
    """

    def __init__(
        self, *args: Any, static: dict[str, Any] | None = None, extra: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.static = dict(static or {})
        self.extra = extra

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update(self.task_fields(record))
        body["process"] = record.process
        if record.processName and record.processName != "MainProcess":
            body["process_name"] = record.processName
        if record.threadName and record.threadName != "MainThread":
            body["thread"] = record.threadName
        if self.extra:
            for key, value in vars(record).items():
                if key not in _STANDARD and key not in TASK_FIELDS and key not in body:
                    body[key] = value
        body.update(self.static)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, default=_fallback, ensure_ascii=False)

    @staticmethod
    def task_fields(record: logging.LogRecord) -> dict[str, Any]:
        """The task fields the record carries, or those of the task running now."""
        fields = {
            k: getattr(record, k)
            for k in TASK_FIELDS
            if getattr(record, k, None) not in (None, "", _UNKNOWN)
        }
        request = current_request.get()
        if request is not None and request.id:
            fields.setdefault("task_id", request.id)
            fields.setdefault("task_name", request.task)
            if request.hostname:
                fields.setdefault("worker", request.hostname)
        return {k: fields[k] for k in TASK_FIELDS if k in fields}


def _fallback(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
