"""Scenario 13: ten processes enqueue the same unique keys at the same instant.

``tests/acceptance/test_runtime_limits.py`` races eight processes on one
key. Here ten processes (no worker: the rows stay unfinished, so every key
stays taken) race on 25 explicit keys (``apply_async(unique_key=...)``) and 25
keys derived from the arguments (``@task(unique_key=True)``), starting
together at a wall-clock instant. Each key ends with exactly one row, and
every process was handed that row's id.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest

from djtasks.models import TaskRecord
from tests.chaos.conftest import report
from tests.conftest import on_postgres

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROCESSES = 10
KEYS = 25


def test_ten_processes_racing_on_each_unique_key_make_one_row(manage_py: Any) -> None:
    start_at = time.time() + 6.0  # once every process has started Django
    code = (
        "import time\n"
        "from tests.chaos.app.tasks import effect, unique\n"
        "print(f'READY {time.time()}', flush=True)\n"
        f"time.sleep(max(0, {start_at} - time.time()))\n"
        f"for k in range({KEYS}):\n"
        "    r = effect.apply_async((k,), unique_key=f'race:{k}')\n"
        "    print(f'KEY race:{k}={r.id}', flush=True)\n"
        "    r = unique.delay(k)\n"
        "    print(f'ARGS {k}={r.id}', flush=True)\n"
    )
    procs = [manage_py(["shell", "-c", code], label=f"racer-{i}") for i in range(PROCESSES)]
    for proc in procs:
        assert proc.wait(timeout=90) == 0, proc.log()
    ready = [
        float(line.split()[1])
        for p in procs
        for line in p.log().splitlines()
        if line.startswith("READY ")
    ]
    late = sum(t > start_at for t in ready)  # started after the gun: raced less
    handed: dict[str, set[str]] = defaultdict(set)
    for proc in procs:
        for line in proc.log().splitlines():
            if line.startswith(("KEY ", "ARGS ")):
                key, _, task_id = line.partition("=")
                handed[key].add(task_id)
    assert len(handed) == 2 * KEYS
    assert all(len(ids) == 1 for ids in handed.values()), {
        k: v for k, v in handed.items() if len(v) > 1
    }
    assert TaskRecord.objects.filter(name="chaos.effect").count() == KEYS
    assert TaskRecord.objects.filter(name="chaos.unique").count() == KEYS
    rows = {str(i) for i in TaskRecord.objects.values_list("id", flat=True)}
    assert {next(iter(ids)) for ids in handed.values()} == rows
    report(
        f"unique race ({'postgresql' if on_postgres() else 'sqlite'}): {PROCESSES} processes x "
        f"{2 * KEYS} keys ({PROCESSES * 2 * KEYS} calls): {len(rows)} rows, one per key, every "
        f"caller handed its id ({PROCESSES - late} of {PROCESSES} started on the same instant)"
    )
