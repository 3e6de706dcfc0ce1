"""HMAC signatures of stored payloads (``DJTASKS_SIGN_MESSAGES``).

A signature binds what a worker would act on, so that write access to the
task table alone is not enough to run a task with arguments of one's choice
(or, with pickle, arbitrary code):

``HMAC-SHA256(key, "djtasks:<kind>:" + netstring(name) + netstring(content type) + text)``

- *kind* is ``args`` for a task's arguments and ``result`` for a return
  value or progress meta, so one can never stand in for the other;
- *name* is the task name for arguments (a payload signed for one task is
  refused under another) and empty for results;
- *content type* is the stored one, parameters included: serializer,
  compression and the signature scheme;
- *text* is the stored text after the signature: the encoded (compressed,
  base64) payload exactly as the worker will read it.

The key is derived as :func:`django.utils.crypto.salted_hmac` derives it
(salted for this use only) from ``DJTASKS_SIGNING_KEY`` if set, else ``SECRET_KEY``. A
signature made with one of ``DJTASKS_SIGNING_KEY_FALLBACKS`` (or
``SECRET_KEY_FALLBACKS`` when no signing key is set) still verifies, so keys
can be rotated without failing the rows already queued.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from django.conf import settings as django_settings
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes

from .conf import settings

#: The value of the ``hmac=`` content type parameter of a signed payload.
SCHEME = "sha256"
#: Length of an encoded signature (base64url of 32 bytes, no padding).
SIGNATURE_LENGTH = 43

_SALT = "djtasks.message_signing"


def _keys() -> list[str | bytes]:
    if settings.SIGNING_KEY:
        return [settings.SIGNING_KEY, *settings.SIGNING_KEY_FALLBACKS]
    return [django_settings.SECRET_KEY, *getattr(django_settings, "SECRET_KEY_FALLBACKS", [])]


def _message(kind: str, name: str, content_type: str, text: str) -> str:
    return f"djtasks:{kind}:{len(name)}:{name},{len(content_type)}:{content_type},{text}"


@functools.lru_cache(maxsize=16)
def _derived(secret: str | bytes) -> bytes:
    # The key salted_hmac(_SALT, ..., secret, algorithm="sha256") would derive,
    # computed once per secret rather than on every signature.
    return hashlib.sha256(force_bytes(_SALT) + force_bytes(secret)).digest()


def _signature(key: str | bytes, message: str) -> str:
    digest = hmac.new(_derived(key), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(kind: str, name: str, content_type: str, text: str) -> str:
    """The signature of ``text`` stored as ``content_type`` for task ``name``, with the current key."""
    return _signature(_keys()[0], _message(kind, name, content_type, text))


def verify(kind: str, name: str, content_type: str, text: str, signature: str) -> bool:
    """Whether ``signature`` was made by :func:`sign` with the current key or a fallback."""
    if len(signature) != SIGNATURE_LENGTH:
        return False
    message = _message(kind, name, content_type, text)
    return any(constant_time_compare(_signature(key, message), signature) for key in _keys())
