"""``taskbeat``: enqueue periodic tasks on time, once each, from one leader.

Run as many beats as you like; one leads, the others wait:

- PostgreSQL: the leader holds a session advisory lock on a connection of its
  own (which also LISTENs for schedule edits). If the leader dies, its
  session ends, the lock is free, and a follower that tries every second
  takes over. TCP keepalives on that session free the lock of a vanished
  host within about 15 s.
- SQLite (or ``DJTASKS_BEAT_ELECTION = "lease"``): a :class:`~djtasks.models.BeatLease`
  row that the leader renews; a follower takes it once it expires
  (``DJTASKS_BEAT_LEASE`` seconds after the leader's last renewal).

Even two beats that both believe they lead enqueue a tick once: firing one
is a single transaction that (1) moves the entry's ``next_run_at`` on, only
if it still holds the due time this beat read, (2) inserts the
:class:`~djtasks.models.ScheduleTick` (entry, due time), unique, and (3)
inserts the task row through :mod:`djtasks.queue`. Whoever comes second
updates nothing or hits the unique key, and rolls back.

Missed runs (no beat running, a takeover, a clock jump) follow the entry's
``catch_up``: "once" enqueues one run now, "skip" none; never a burst. A run
is missed when the one after it is due too, or when beat reaches it more
than ``DJTASKS_BEAT_GRACE`` seconds late.
"""

from __future__ import annotations

from .election import (
    CHANNEL,
    LEASE_NAME,
    AdvisoryLockElector,
    Elector,
    LeaseElector,
    LostLeadership,
    make_elector,
)
from .entries import (
    DEFINITION,
    apply_definition,
    edited_since_sync,
    entry_fields,
    problems,
    settings_entries,
    sync_settings,
    validate_periodic_task,
)
from .service import Beat, Plan, default_name, first_run, notify_beat, plan, send, upcoming

__all__ = [
    "CHANNEL",
    "DEFINITION",
    "LEASE_NAME",
    "AdvisoryLockElector",
    "Beat",
    "Elector",
    "LeaseElector",
    "LostLeadership",
    "Plan",
    "apply_definition",
    "default_name",
    "edited_since_sync",
    "entry_fields",
    "first_run",
    "make_elector",
    "notify_beat",
    "plan",
    "problems",
    "send",
    "settings_entries",
    "sync_settings",
    "upcoming",
    "validate_periodic_task",
]
