"""djtasks.logging.JSONFormatter: one JSON object per record, with the task's fields."""

from __future__ import annotations

import json
import logging
from typing import Any

from djtasks.logging import JSONFormatter
from djtasks.request import Request, current_request
from djtasks.utils.log import get_task_logger


def record(
    msg: str = "hello %s",
    args: Any = ("world",),
    level: int = logging.INFO,
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    rec = logging.LogRecord("shop.tasks", level, __file__, 10, msg, args, exc_info)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_a_plain_record() -> None:
    line = JSONFormatter().format(record())
    body = json.loads(line)
    assert body["message"] == "hello world" and body["level"] == "INFO"
    assert body["logger"] == "shop.tasks" and body["timestamp"].endswith("+00:00")
    assert "task_id" not in body and "\n" not in line


def test_the_worker_outcome_fields_come_from_extra() -> None:
    body = json.loads(
        JSONFormatter().format(
            record(
                "%s[%s] %s in %s",
                ("t", "id-1", "SUCCESS", "0.1s"),
                task_id="id-1",
                task_name="t",
                state="SUCCESS",
                runtime=0.1,
                worker="w1@host",
            )
        )
    )
    assert [k for k in body if k in ("task_id", "task_name", "state", "runtime", "worker")] == [
        "task_id",
        "task_name",
        "state",
        "runtime",
        "worker",
    ]
    assert body["runtime"] == 0.1 and body["worker"] == "w1@host" and body["state"] == "SUCCESS"


def test_inside_a_task_the_running_request_fills_them_in() -> None:
    token = current_request.set(Request(id="abc", task="shop.tasks.send", hostname="w2@host"))
    try:
        body = json.loads(JSONFormatter().format(record()))
    finally:
        current_request.reset(token)
    assert (body["task_id"], body["task_name"], body["worker"]) == (
        "abc",
        "shop.tasks.send",
        "w2@host",
    )


def test_get_task_logger_placeholders_are_dropped_outside_a_task(caplog: Any) -> None:
    logger = get_task_logger("shop.tasks")
    with caplog.at_level(logging.INFO, logger="shop.tasks"):
        logger.info("outside")
    body = json.loads(JSONFormatter().format(caplog.records[0]))
    assert "task_id" not in body and "task_name" not in body


def test_extra_static_and_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        info = sys.exc_info()
    formatter = JSONFormatter(static={"service": "shop"})
    body = json.loads(formatter.format(record(exc_info=info, order=42, when=object(), tags={"a"})))
    assert body["service"] == "shop" and body["order"] == 42 and body["tags"] == ["a"]
    assert body["when"].startswith("<object") and "ValueError: boom" in body["exception"]
    assert "order" not in json.loads(JSONFormatter(extra=False).format(record(order=42)))


def test_it_works_from_dictconfig() -> None:
    import logging.config

    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "json": {"()": "djtasks.logging.JSONFormatter", "static": {"env": "test"}}
            },
            "handlers": {"h": {"class": "logging.NullHandler", "formatter": "json"}},
            "loggers": {"djtasks.test_json_log": {"handlers": ["h"]}},
        }
    )
    handler = logging.getLogger("djtasks.test_json_log").handlers[0]
    assert json.loads(handler.format(record()))["env"] == "test"
    logging.getLogger("djtasks.test_json_log").handlers.clear()
