"""Tasks for tests/acceptance/test_serialization_workers.py (imported through DJTASKS_IMPORTS)."""

from __future__ import annotations

from typing import Any

from djtasks import task


@task(bind=True, max_retries=1, name="tests.serialization.retry_with_new_args")
def retry_with_new_args(self: Any, value: Any, step: int = 0) -> Any:
    """Retries once with new arguments; returns what the second run received."""
    if step == 0:
        raise self.retry(args=[value], kwargs={"step": 1}, countdown=0)
    return {"value": value, "step": step}
