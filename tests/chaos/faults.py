"""Faults injected into a worker's queue writes, for the connection tests.

A worker subprocess started with ``DJTASKS_CHAOS_FAULTS="claim:1,settle:2"``
(see ``app/apps.py``) loses the reply of its first claim that took rows, and
of its first two settles that started rows: the statement commits, then the
call raises ``OperationalError`` as if the connection had dropped between
the server's commit and its answer. pg_terminate_backend() can land there,
but rarely; this lands there every time, on both databases.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.db import OperationalError

logger = logging.getLogger("djtasks.worker")

#: What counts as "the statement did something" for each faulted function.
_DID_SOMETHING = {
    "claim": lambda result: bool(result),
    "settle": lambda result: bool(result),
}


def install(spec: str) -> None:
    from djtasks import queue

    for part in spec.split(","):
        name, _, times = part.partition(":")
        if name not in _DID_SOMETHING:
            raise ValueError(f"DJTASKS_CHAOS_FAULTS: no fault for {name!r}")
        _wrap(queue, name, int(times or 1))


def _wrap(module: Any, name: str, times: int) -> None:
    original = getattr(module, name)
    left = [times]

    @functools.wraps(original)
    def faulty(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if left[0] > 0 and _DID_SOMETHING[name](result):
            left[0] -= 1
            logger.warning("chaos: dropping the reply of a committed %s (%r)", name, result)
            raise OperationalError(f"chaos: the connection dropped after {name} committed")
        return result

    setattr(module, name, faulty)
