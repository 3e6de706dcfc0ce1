"""Fixtures and sizes of the chaos suite.

Sizes come from the environment so CI stays short and the issue's runs are
the same tests, bigger::

    DJTASKS_CHAOS_TASKS=10000 pytest -s tests/chaos/test_fleet.py   # 4 workers x 10,000
    DJTASKS_CHAOS_BEAT_SECONDS=180 pytest -s tests/chaos/test_beats.py

Every test prints its figures on a line starting ``chaos:`` (seen with ``-s``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.support import ManagedProcess

#: Tasks per fleet run (scenarios 3 and 4).
TASKS = int(os.environ.get("DJTASKS_CHAOS_TASKS", "1000"))
#: Seconds the three beats run, about (scenario 8).
BEAT_SECONDS = float(os.environ.get("DJTASKS_CHAOS_BEAT_SECONDS", "10"))
#: Short leases: a dead worker's rows come back this soon.
LEASE = 2.0


def report(line: str) -> None:
    """Print a figures line (visible with ``pytest -s``; quoted in docs/guarantees.md)."""
    print(f"\nchaos: {line}", flush=True)


@pytest.fixture
def spawn(manage_py: Callable[..., ManagedProcess]) -> Callable[..., ManagedProcess]:
    """``spawn(args, label, env)``: a ``manage.py`` process reaped by ``manage_py``."""

    def start(args: list[str], label: str, env: dict[str, str] | None = None) -> ManagedProcess:
        return manage_py(args, label=label, env=env)

    return start


@pytest.fixture
def short_leases() -> dict[str, Any]:
    return {"DJTASKS_TEST_VISIBILITY_TIMEOUT": str(LEASE)}
