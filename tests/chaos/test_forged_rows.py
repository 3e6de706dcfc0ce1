"""Scenario 10: rows written straight into the table by someone who is not djtasks.

``tests/acceptance/test_outcomes.py`` covers an unregistered name, undecodable
and malformed payloads, a disallowed content type and bad headers;
``tests/acceptance/test_serialization_workers.py`` covers bad signatures and
pickle. Here: names that are importable modules with a side effect on
import (through the registry path and the ``django.tasks`` path), a
compression bomb, and a seeded flood of every kind of forged row mixed with
real tasks. Nothing forged runs or gets imported, each forged row ends
FAILURE saying why, every real task succeeds, and the worker never stops.
"""

from __future__ import annotations

import base64
import random
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from djtasks import serialization, states
from djtasks.backends import HEADER
from djtasks.models import TaskRecord
from tests.acceptance.helpers import wait_until_finished
from tests.chaos.app import tasks
from tests.chaos.app.models import Effect
from tests.chaos.conftest import report

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BOMB = "tests.chaos.bomb.detonate"


def forge(
    name: str, payload: str, content_type: str = "application/json", headers: Any = None
) -> str:
    row = TaskRecord.objects.create(
        name=name,
        payload=payload,
        content_type=content_type,
        headers={} if headers is None else headers,
        eta=timezone.now(),
    )
    return str(row.id)


def zlib_bomb(megabytes: int) -> str:
    """A valid zlib payload that inflates to ``megabytes`` MiB of JSON."""
    body = b'[["' + b"a" * (megabytes << 20) + b'"], {}]'
    return base64.b64encode(zlib.compress(body, 9)).decode()


def test_forged_rows_never_run_never_import_and_the_worker_goes_on(
    worker: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "bomb-imported"
    w = worker(concurrency=2, env={"DJTASKS_CHAOS_BOMB": str(marker)})
    effect = tasks.effect.name
    _, good_payload = serialization.encode_arguments(effect, [1], {}, "json")
    specific = {
        forge(BOMB, "[[], {}]"): "djtasks.exceptions.NotRegistered",
        forge(BOMB, "[[], {}]", headers={HEADER: {"backend": "default"}}): None,
        forge("os.system", f'[["touch {marker}.os"], {{}}]'): "djtasks.exceptions.NotRegistered",
        forge(
            effect, zlib_bomb(64), "application/json; compression=zlib"
        ): "djtasks.exceptions.DecodeError",
    }

    # A seeded flood: every kind of forgery, between real tasks.
    rng = random.Random(10)
    kinds = [
        lambda: forge(
            rng.choice(
                [
                    "subprocess.check_output",
                    "builtins.eval",
                    "os.system",
                    BOMB,
                    "",
                    "x" * 255,
                    "tests.chaos.app.tasks",
                ]
            ),
            "[[], {}]",
        ),
        lambda: forge(
            effect,
            rng.choice(
                [
                    "",
                    "{",
                    "null",
                    "[]",
                    "[1, 2]",
                    "[[], []]",
                    '{"args": []}',
                    "\ufeff[[1], {}]",
                    "[[1], {}]x",
                ]
            ),
        ),
        lambda: forge(
            effect,
            good_payload,
            rng.choice(
                [
                    "text/plain",
                    "application/x-python-serialize",
                    "application/x-yaml",
                    "application/json; compression=lzma",
                    "application/json; hmac=sha256",
                    "application/json; compression=zlib",
                    ";;;",
                    "application/json; charset=binary",
                ]
            ),
        ),
        lambda: forge(
            effect,
            base64.b64encode(rng.randbytes(64)).decode(),
            "application/json; compression=zlib",
        ),
        lambda: forge(
            effect,
            "[[1], {}]",
            headers=rng.choice([[1], "text", 7, {HEADER: "x"}, {HEADER: {"backend": 3}}]),
        ),
    ]
    flood = [rng.choice(kinds)() for _ in range(60)]
    real = [r.id for r in tasks.effect.bulk_delay([(i,) for i in range(60)])]
    forged = [*specific, *flood]

    counts = wait_until_finished(forged + real, timeout=60)
    assert counts.get(states.SUCCESS, 0) >= len(real)
    rows = {str(r.id): r for r in TaskRecord.objects.filter(pk__in=forged)}
    ran = set(Effect.objects.values_list("task_id", flat=True))
    for task_id in forged:
        row = rows[task_id]
        # A forged row whose payload happens to be a valid call of a real
        # task ("[[1], {}]" with odd but harmless headers) may run: it is a
        # real call. Everything else fails, saying why.
        if row.state == states.SUCCESS:
            assert row.payload in ("[[1], {}]",) and row.name == effect, row
            continue
        assert row.state == states.FAILURE, (row.name, row.payload, row.content_type)
        assert row.exc_type and row.exc_message, row
        assert task_id not in ran
    for task_id, exc_type in specific.items():
        assert rows[task_id].state == states.FAILURE
        if exc_type:
            assert rows[task_id].exc_type == exc_type, rows[task_id].exc_message
    assert "over DJTASKS_MAX_PAYLOAD_BYTES" in rows[list(specific)[3]].exc_message
    assert not marker.exists()  # the bomb module was never imported...
    assert not Path(f"{marker}.ran").exists()  # ...nor run
    assert not Path(f"{marker}.os").exists()
    assert TaskRecord.objects.filter(pk__in=real, state=states.SUCCESS).count() == len(real)
    assert w.alive()
    assert tasks.effect.delay(-1).get(timeout=20) == -1
    reasons = Counter(
        rows[t].exc_type.rpartition(".")[2] for t in forged if rows[t].state == states.FAILURE
    )
    report(
        f"forged rows: {len(forged)} forged ({dict(reasons)}), {len(real)} real: "
        "no forged row ran or imported anything; every real task succeeded"
    )
