"""Helpers for tests that watch real workers through the database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from djtasks import states
from djtasks.models import TaskRecord
from tests.support import wait_until
from tests.testapp.models import Execution


def state_counts(ids: Iterable[str] | None = None) -> dict[str, int]:
    qs = TaskRecord.objects.all()
    if ids is not None:
        qs = qs.filter(pk__in=list(ids))
    return dict(Counter(qs.values_list("state", flat=True)))


def wait_for_states(ids: Iterable[str], expected: dict[str, int], timeout: float = 30.0) -> None:
    """Wait until the rows ``ids`` are in exactly the ``expected`` states."""
    ids = list(ids)
    wait_until(
        lambda: state_counts(ids) == expected,
        timeout,
        message=f"states {expected} (now {state_counts(ids)})",
    )


def wait_until_finished(ids: Iterable[str], timeout: float = 30.0) -> dict[str, int]:
    """Wait until every row of ``ids`` is in a final state; return the state counts."""
    ids = list(ids)

    def finished() -> bool:
        return TaskRecord.objects.filter(pk__in=ids, state__in=states.READY_STATES).count() == len(
            ids
        )

    wait_until(finished, timeout, message=f"{len(ids)} tasks to finish (now {state_counts(ids)})")
    return state_counts(ids)


def runs(task_id: str) -> list[Execution]:
    return list(Execution.objects.filter(task_id=task_id).order_by("created", "id"))


def wait_for_runs(count: int, timeout: float = 15.0) -> list[Execution]:
    """Wait until at least ``count`` task runs have begun (Execution rows)."""
    return wait_until(
        lambda: (rows := list(Execution.objects.all())) and len(rows) >= count and rows,
        timeout,
        message=f"{count} task runs to begin",
    )
