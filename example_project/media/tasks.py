"""Tasks of the example project: one CPU-bound, one slow with progress, one flaky."""

import hashlib
import random
import time

from djtasks import task
from djtasks.utils.log import get_task_logger

logger = get_task_logger(__name__)


class TemporaryUpstreamError(Exception):
    """The remote service said: try again later."""


@task(queue="default", max_retries=3, public_result=True)
def make_thumbnail(image_id: int, size: int) -> dict:
    """Pretend to resize an image: a few milliseconds of real CPU work."""
    digest = hashlib.sha256(f"{image_id}:{size}".encode()).digest()
    for _ in range(20_000):
        digest = hashlib.sha256(digest).digest()
    logger.info("thumbnail of image %s at %spx done", image_id, size)
    return {"image_id": image_id, "size": size, "etag": digest.hex()[:16]}


@task(bind=True, public_result=True)
def slow_report(self, steps: int = 10, delay: float = 0.3) -> str:
    """A slow job that reports its progress as it goes."""
    for i in range(steps):
        time.sleep(delay)
        self.update_state(state="PROGRESS", meta={"current": i + 1, "total": steps})
    return f"report with {steps} sections"


@task(
    bind=True,
    autoretry_for=(TemporaryUpstreamError,),
    retry_backoff=1,
    retry_backoff_max=8,
    max_retries=4,
)
def fetch_exchange_rate(self, currency: str) -> float:
    """Call a flaky upstream: fails now and then and is retried with backoff."""
    if self.request.retries < 2 and random.random() < 0.7:  # noqa: S311 - a demo
        raise TemporaryUpstreamError(f"upstream busy for {currency}")
    return round(1 + random.random(), 4)  # noqa: S311 - a demo
