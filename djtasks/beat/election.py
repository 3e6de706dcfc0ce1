"""Leadership among ``taskbeat`` processes: one leads, the others wait to take over."""

from __future__ import annotations

import datetime as dt
import logging
import time
import zlib
from typing import Any

from django.db import DatabaseError, IntegrityError, InterfaceError, transaction
from django.db.models import Case, F, Q, Value, When

from .. import queue
from ..conf import settings
from ..models import BeatLease

logger = logging.getLogger("djtasks.beat")

#: The NOTIFY channel a leading beat LISTENs on; saving an entry notifies it.
CHANNEL = "djtasks_beat"
#: The advisory lock the leader holds (per database).
LOCK_KEY = zlib.crc32(b"djtasks.beat")
#: The primary key of the :class:`~djtasks.models.BeatLease` row.
LEASE_NAME = "beat"

try:
    import psycopg

    DB_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, InterfaceError, psycopg.Error)
except ImportError:  # pragma: no cover - psycopg is a dependency
    DB_ERRORS = (DatabaseError, InterfaceError)


class LostLeadership(Exception):  # noqa: N818 - a state, not an error
    """This beat no longer leads; what it was doing is rolled back."""


class Elector:
    """Leadership among beats. Subclasses: advisory lock, lease row."""

    mode = ""

    def __init__(self, name: str, lease: float) -> None:
        self.name = name
        self.lease = lease
        self.leader = False
        self._record_due = 0.0

    def acquire(self, now: dt.datetime) -> bool:
        raise NotImplementedError

    def confirm(self, now: dt.datetime) -> bool:
        """Still the leader? Renews what needs renewing."""
        raise NotImplementedError

    def fence(self, now: dt.datetime) -> None:
        """Inside a tick's transaction: raise :class:`LostLeadership` if no longer leading."""

    def release(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """After a database error: lead no more, reconnect on the next ``acquire``."""
        self.release()

    def waitables(self) -> list[Any]:
        return []

    def drain(self) -> None:
        """Read what woke us (notifications); lose leadership if the connection died."""

    def renew_in(self) -> float:
        """Seconds until :meth:`confirm` must run again."""
        return self.lease / 5

    def _record(self, now: dt.datetime, acquired: bool = False) -> None:
        # Who leads, for the admin (best effort with the advisory lock).
        fields: dict[str, Any] = {
            "holder": self.name,
            "expires_at": now + dt.timedelta(seconds=self.lease),
        }
        if acquired:
            fields["acquired_at"] = now
        alias = queue.db_alias()
        if not BeatLease.objects.using(alias).filter(pk=LEASE_NAME).update(**fields):
            BeatLease.objects.using(alias).get_or_create(pk=LEASE_NAME, defaults=fields)
        self._record_due = time.monotonic() + self.lease / 2  # well before it expires


class AdvisoryLockElector(Elector):
    """PostgreSQL: a session advisory lock on a dedicated connection."""

    mode = "PostgreSQL advisory lock"

    def __init__(self, name: str, lease: float) -> None:
        super().__init__(name, lease)
        self.conn: Any = None

    def _connect(self) -> None:
        url = settings.LISTEN_DATABASE_URL
        if url:
            self.conn = psycopg.connect(url, autocommit=True)
        else:
            django_conn = queue.connection()
            self.conn = django_conn.get_new_connection(django_conn.get_connection_params())
            self.conn.autocommit = True
        # The server notices a vanished client host (and frees the lock) in ~15 s.
        self.conn.execute(
            "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
            "SET tcp_keepalives_count = 4"
        )

    def acquire(self, now: dt.datetime) -> bool:
        if self.conn is None or self.conn.closed:
            self._connect()
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()
        if not row or not row[0]:
            return False
        self.conn.execute(f"LISTEN {CHANNEL}")
        self.leader = True
        self._record(now, acquired=True)
        return True

    def confirm(self, now: dt.datetime) -> bool:
        if not self.leader:
            return False
        try:
            self.conn.execute("SELECT 1")
        except Exception as exc:  # any failure means the session is gone
            logger.warning("beat: the lock connection failed (%s)", exc)
            self.reset()
            return False
        if time.monotonic() >= self._record_due:
            self._record(now)
        return True

    def release(self) -> None:
        # Closing the session frees the lock at once.
        self.leader = False
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing is best effort
                logger.debug("beat: closing the lock connection failed", exc_info=True)
        self.conn = None

    def waitables(self) -> list[Any]:
        if not self.leader or self.conn is None or self.conn.closed:
            return []
        return [self.conn.fileno()]

    def drain(self) -> None:
        try:
            pgconn = self.conn.pgconn
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                pass
            # A terminated session first sends its error and only then closes:
            # ask, so a dead lock connection is noticed now (and not polled hot).
            self.conn.execute("SELECT 1")
        except Exception as exc:  # the session, and so the lock, is gone
            logger.warning("beat: lost the lock connection (%s)", exc)
            self.reset()


class LeaseElector(Elector):
    """A lease row: the leader renews it; anyone may take it once it has expired."""

    mode = "lease row"

    def __init__(self, name: str, lease: float) -> None:
        super().__init__(name, lease)
        self.expires: dt.datetime | None = None

    def _rows(self) -> Any:
        return BeatLease.objects.using(queue.db_alias()).filter(pk=LEASE_NAME)

    def acquire(self, now: dt.datetime) -> bool:
        current = self._rows().values_list("holder", "expires_at").first()
        if current is not None:
            holder, expires = current
            if holder and holder != self.name and expires is not None and expires >= now:
                return False
        until = now + dt.timedelta(seconds=self.lease)
        taken = (
            self._rows()
            .filter(
                Q(holder=self.name)
                | Q(holder="")
                | Q(expires_at__isnull=True)
                | Q(expires_at__lt=now)
            )
            .update(
                holder=self.name,
                expires_at=until,
                acquired_at=Case(When(holder=self.name, then=F("acquired_at")), default=Value(now)),
            )
        )
        if not taken:
            if current is not None:
                return False
            try:
                with transaction.atomic(using=queue.db_alias()):
                    BeatLease.objects.using(queue.db_alias()).create(
                        pk=LEASE_NAME, holder=self.name, acquired_at=now, expires_at=until
                    )
            except IntegrityError:
                return False
        self.leader, self.expires = True, until
        self._record_due = time.monotonic() + self.lease / 5
        return True

    def confirm(self, now: dt.datetime) -> bool:
        if not self.leader or self.expires is None:
            return False
        if now >= self.expires:
            # Our lease ran out (stopped, or a clock jump): someone may lead now.
            self.leader = False
            return self.acquire(now)
        if time.monotonic() >= self._record_due:
            until = now + dt.timedelta(seconds=self.lease)
            if not self._rows().filter(holder=self.name).update(expires_at=until):
                logger.warning("beat: %s lost its lease to another beat", self.name)
                self.leader = False
                return False
            self.expires = until
            self._record_due = time.monotonic() + self.lease / 5
        return True

    def fence(self, now: dt.datetime) -> None:
        until = now + dt.timedelta(seconds=self.lease)
        if not self._rows().filter(holder=self.name, expires_at__gte=now).update(expires_at=until):
            raise LostLeadership
        self.expires = until

    def release(self) -> None:
        if self.leader:
            try:
                self._rows().filter(holder=self.name).update(holder="", expires_at=None)
            except DB_ERRORS as exc:
                logger.warning(
                    "beat: could not release the lease (%s); it expires in %ss", exc, self.lease
                )
        self.leader, self.expires = False, None

    def reset(self) -> None:
        self.leader, self.expires = False, None


def make_elector(name: str, lease: float) -> Elector:
    election = settings.BEAT_ELECTION
    if election == "lease" or not queue.is_postgres():
        return LeaseElector(name, lease)
    return AdvisoryLockElector(name, lease)
