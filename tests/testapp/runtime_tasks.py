"""Tasks for the worker-runtime tests: limits, caps, time limits.

Each returns ``[start, end]`` wall-clock seconds so a test can check how runs
overlapped and how they were spaced, across processes and workers.
"""

from __future__ import annotations

import time
from typing import Any

from djtasks import task
from djtasks.exceptions import SoftTimeLimitExceeded


@task(name="tests.rated", rate_limit="5/s")
def rated(i: int) -> list[float]:
    now = time.time()
    return [now, now]


@task(name="tests.capped", concurrency_limit=2)
def capped(seconds: float) -> list[float]:
    start = time.time()
    time.sleep(seconds)
    return [start, time.time()]


@task(name="tests.capped_per_key", concurrency_limit=1, concurrency_key="account")
def capped_per_key(account: str, seconds: float) -> list[float]:
    start = time.time()
    time.sleep(seconds)
    return [start, time.time()]


@task(name="tests.hard_limited", time_limit=1)
def hard_limited(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


@task(name="tests.soft_limited", soft_time_limit=0.5)
def soft_limited(seconds: float) -> str:
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@task(name="tests.unique_noop", unique_for=60)
def unique_noop(value: Any = None) -> Any:
    return value


@task(name="tests.memory_hog")
def memory_hog(mib: int) -> int:
    block = bytearray(mib * 1024 * 1024)
    return len(block)
