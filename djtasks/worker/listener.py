"""Wake-ups for idle workers: PostgreSQL LISTEN on its own connection.

``queue.enqueue`` sends ``NOTIFY djtasks, '<queue>'`` in the enqueueing
transaction, so a worker sleeping on this socket wakes the moment the task
is committed. Polling stays as the fallback (ETAs, retries, a lost
connection), and SQLite only polls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import queue
from ..conf import settings
from .remote import CONTROL_CHANNEL

logger = logging.getLogger("djtasks.worker")


@dataclass
class Wakeup:
    work: bool = False
    control: bool = False


class Listener:
    """A LISTEN connection; :meth:`waitables` to sleep on, :meth:`drain` after waking."""

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = set(queues)
        self.conn: Any = None

    @classmethod
    def for_worker(cls, queues: Sequence[str], poll_interval: float) -> Listener | None:
        if not queue.is_postgres():
            logger.info("SQLite: workers poll every %ss (no LISTEN/NOTIFY)", poll_interval)
            return None
        listener = cls(queues)
        listener.connect()
        return listener

    def connect(self) -> None:
        try:
            url = settings.LISTEN_DATABASE_URL
            if url:
                import psycopg

                self.conn = psycopg.connect(url, autocommit=True)
            else:
                django_conn = queue.connection()
                self.conn = django_conn.get_new_connection(django_conn.get_connection_params())
                self.conn.autocommit = True
            self.conn.execute(f"LISTEN {queue.NOTIFY_CHANNEL}")
            self.conn.execute(f"LISTEN {CONTROL_CHANNEL}")
            if not url and not self._probe():
                logger.warning(
                    "LISTEN gets no notifications through this connection (is it behind "
                    "PgBouncer in transaction mode?): the worker polls every %ss. Set "
                    "DJTASKS_LISTEN_DATABASE_URL to a direct connection for instant "
                    "wake-ups.%s",
                    settings.POLL_INTERVAL,
                    " A pooler older than PgBouncer 1.21 also needs "
                    "DJTASKS_PREPARE_STATEMENTS = False."
                    if settings.PREPARE_STATEMENTS
                    else "",
                )
                self.close()
        except Exception as exc:
            logger.warning("LISTEN connection failed (%s); polling until it is back", exc)
            self.close()

    def _probe(self) -> bool:
        """Send a NOTIFY through the main connection and see it arrive here."""
        import select
        import uuid

        channel = f"djtasks_probe_{uuid.uuid4().hex[:12]}"
        self.conn.execute(f"LISTEN {channel}")
        with queue.connection().cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, 'probe')", [channel])
        deadline = time.monotonic() + 2.0
        found = False
        while not found and time.monotonic() < deadline:
            select.select([self.conn.fileno()], [], [], max(0.0, deadline - time.monotonic()))
            pgconn = self.conn.pgconn
            pgconn.consume_input()
            while (n := pgconn.notifies()) is not None:
                found = found or n.relname.decode() == channel
        self.conn.execute(f"UNLISTEN {channel}")
        return found

    def waitables(self) -> list[Any]:
        if self.conn is None or self.conn.closed:
            return []
        return [self.conn.fileno()]

    def drain(self) -> Wakeup:
        """Read pending notifications: was one for our queues, or for control?"""
        wake = Wakeup()
        if self.conn is None:
            self.connect()
            return wake
        try:
            pgconn = self.conn.pgconn
            pgconn.consume_input()
            while (n := pgconn.notifies()) is not None:
                if n.relname.decode() == CONTROL_CHANNEL:
                    wake.control = True
                elif n.extra.decode() in self.queues:
                    wake.work = True
        except Exception as exc:
            logger.warning("LISTEN connection lost (%s); reconnecting", exc)
            self.reset()
        return wake

    def reset(self) -> None:
        self.close()
        self.connect()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                logger.debug("closing the LISTEN connection failed", exc_info=True)
        self.conn = None
