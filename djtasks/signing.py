"""Signed task ids: the token in a status URL that lets its holder see one task.

A token is ``<task id>:<signature>`` made with :mod:`django.core.signing`
(keyed by ``SECRET_KEY``, salted for this use only), so a visitor can follow
the task whose URL they were given and cannot guess the URL of any other.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core import signing

_SALT = "djtasks.status"


def _signer() -> signing.Signer:
    return signing.Signer(salt=_SALT)


def normalize_task_id(value: Any) -> str | None:
    """The canonical text of a task id (a UUID), or ``None`` if it is not one."""
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except (TypeError, ValueError, AttributeError):
        return None


def sign_task_id(task_id: Any) -> str:
    """Return the status token for ``task_id``.

    :raises ValueError: ``task_id`` is not a UUID.
    """
    canonical = normalize_task_id(task_id)
    if canonical is None:
        raise ValueError(f"task id must be a UUID, not {task_id!r}")
    return _signer().sign(canonical)


def unsign_task_id(token: str) -> str | None:
    """The task id a token was made for, or ``None`` if it is unsigned or tampered with."""
    try:
        value = _signer().unsign(token)
    except signing.BadSignature:
        return None
    return normalize_task_id(value)
