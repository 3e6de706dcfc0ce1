"""Faults injected into a worker's queue writes, for the connection tests.

A worker subprocess started with ``DJTASKS_CHAOS_FAULTS="claim:1,settle:2"``
(see ``app/apps.py``) loses the reply of its first turn (``queue.turn``)
that claimed rows, and of its first two turns that wrote outcomes or
started claimed rows without claiming: the statement commits, then the call
raises ``OperationalError`` as if the connection had dropped between the
server's commit and its answer. pg_terminate_backend() can land there, but
rarely; this lands there every time, on both databases.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.db import OperationalError

logger = logging.getLogger("djtasks.worker")


def _claimed(args: tuple[Any, ...], result: Any) -> bool:
    return bool(result.claimed)


def _settled(args: tuple[Any, ...], result: Any) -> bool:
    outcomes = args[0]
    return not result.claimed and bool(outcomes or result.started)


#: What counts as "the statement did something" for each fault.
_DID_SOMETHING = {"claim": _claimed, "settle": _settled}


def install(spec: str) -> None:
    from djtasks import queue

    left: dict[str, int] = {}
    for part in spec.split(","):
        name, _, times = part.partition(":")
        if name not in _DID_SOMETHING:
            raise ValueError(f"DJTASKS_CHAOS_FAULTS: no fault for {name!r}")
        left[name] = int(times or 1)
    original = queue.turn

    @functools.wraps(original)
    def faulty(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        for name, did in _DID_SOMETHING.items():
            if left.get(name, 0) > 0 and did(args, result):
                left[name] -= 1
                logger.warning("chaos: dropping the reply of a committed %s (%r)", name, result)
                raise OperationalError(f"chaos: the connection dropped after {name} committed")
        return result

    queue.turn = faulty
