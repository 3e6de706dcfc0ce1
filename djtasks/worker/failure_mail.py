"""Mail the site admins about tasks that failed for good (``DJTASKS_SEND_FAILURE_EMAILS``).

Throttled per task name, so a task failing a thousand times sends one mail
per interval, not a thousand.
"""

from __future__ import annotations

import logging
import time

from django.core.mail import mail_admins

from .. import states
from ..conf import settings
from ..queue import Outcome

logger = logging.getLogger("djtasks.worker")


class FailureMailer:
    def __init__(self, worker_name: str) -> None:
        self.worker_name = worker_name
        self._last_sent: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, outcomes: list[Outcome]) -> None:
        if not settings.SEND_FAILURE_EMAILS:
            return
        for o in outcomes:
            if o.state == states.FAILURE:
                self._maybe_send(o)

    def _maybe_send(self, o: Outcome) -> None:
        now = time.monotonic()
        name = o.task_name or "?"
        if now - self._last_sent.get(name, -1e9) < settings.FAILURE_EMAIL_INTERVAL:
            self._suppressed[name] = self._suppressed.get(name, 0) + 1
            return
        self._last_sent[name] = now
        skipped = self._suppressed.pop(name, 0)
        body = (
            f"Task {name}[{o.task_id}] failed on worker {self.worker_name}.\n\n"
            f"{o.exc_type}: {o.exc_message}\n\n{o.traceback}"
        )
        if skipped:
            body += (
                f"\n({skipped} more failure(s) of {name} were not mailed in the last "
                f"{settings.FAILURE_EMAIL_INTERVAL:g}s.)\n"
            )
        try:
            mail_admins(
                f"Task {name} failed: {o.exc_type.rpartition('.')[2]}", body, fail_silently=False
            )
        except Exception as exc:  # mail trouble must never stop the worker
            logger.warning("could not mail the failure of %s[%s]: %s", name, o.task_id, exc)
