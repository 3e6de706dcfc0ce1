"""Task states, in the order a task moves through them.

``PENDING``   waiting in the queue (or unknown id)
``RECEIVED``  claimed by a worker, not yet running
``STARTED``   running in a worker
``RETRY``     failed and waiting to run again (keeps its id)
``SUCCESS``   finished and returned a value
``FAILURE``   raised, or was lost with its worker, or could not run
``REVOKED``   cancelled, or expired before it could run
"""

from __future__ import annotations

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
#: The custom state used by tasks that report progress with ``update_state``.
PROGRESS = "PROGRESS"

ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED})
#: States in which a task will not change again.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
#: States in which a task has not finished.
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY})
#: States a worker may claim from (``eta`` permitting).
WAITING_STATES = frozenset({PENDING, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})

CHOICES = [(s, s) for s in (PENDING, RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED)]

# Lowest index = highest precedence, as in Celery; unknown (custom) states
# rank just above PENDING.
_PRECEDENCE = [SUCCESS, FAILURE, REVOKED, STARTED, RECEIVED, RETRY, None, PENDING]
_CUSTOM = _PRECEDENCE.index(None)


def precedence(state: str | None) -> int:
    """Return the precedence index of ``state`` (lower wins).

    Finished states outrank running ones, which outrank waiting ones; a
    custom state such as ``PROGRESS`` ranks just above ``PENDING``.
    """
    try:
        return _PRECEDENCE.index(state)
    except ValueError:
        return _CUSTOM


__all__ = [
    "ALL_STATES",
    "EXCEPTION_STATES",
    "FAILURE",
    "PENDING",
    "PROGRESS",
    "PROPAGATE_STATES",
    "READY_STATES",
    "RECEIVED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "UNREADY_STATES",
    "WAITING_STATES",
    "precedence",
]
