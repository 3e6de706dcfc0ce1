"""How big each workload is: ``full`` is issue 8's definition, ``tiny`` proves the
harness works in seconds (CI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Size:
    w1_calls: int  # W1: .delay() calls, one autocommit transaction each
    w2_tasks: int  # W2: tasks queued before the worker starts
    w3_tasks: int  # W3: tasks enqueued to an idle worker ...
    w3_gap: float  # ... this many seconds apart
    w4_tasks: int  # W4: due tasks the worker drains ...
    w4_pending: int  # ... with this many pending (not drained) ...
    w4_finished: int  # ... and this many finished rows made by real runs (template)
    realistic_tasks: int  # 1 ms CPU + one INSERT, at -c 2 and -c 8
    memory_tasks: int  # RSS of the worker after this many tasks
    enqueuers: int  # concurrent enqueuer processes ...
    enqueuer_calls: int  # ... each making this many .delay() calls
    bulk_tasks: int  # queue.enqueue() of ...
    bulk_chunk: int  # ... chunks of this many rows
    load_chunk: int = 1000  # rows per statement when the harness fills a backlog

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


SIZES = {
    "full": Size(
        w1_calls=5_000,
        w2_tasks=20_000,
        w3_tasks=200,
        w3_gap=0.020,
        w4_tasks=5_000,
        w4_pending=100_000,
        w4_finished=1_000_000,
        realistic_tasks=10_000,
        memory_tasks=100_000,
        enqueuers=4,
        enqueuer_calls=2_500,
        bulk_tasks=100_000,
        bulk_chunk=1_000,
    ),
    "tiny": Size(
        w1_calls=200,
        w2_tasks=500,
        w3_tasks=20,
        w3_gap=0.020,
        w4_tasks=200,
        w4_pending=1_000,
        w4_finished=1_000,
        realistic_tasks=100,
        memory_tasks=2_000,
        enqueuers=4,
        enqueuer_calls=50,
        bulk_tasks=3_000,
        bulk_chunk=1_000,
    ),
}
