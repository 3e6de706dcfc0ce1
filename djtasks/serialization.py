"""Encoding of task arguments and results, by serializer name.

JSON is the default and round-trips ``datetime``, ``date``, ``time``,
``timedelta``, ``Decimal``, ``UUID``, ``bytes`` and ``set`` through tagged
objects (``{"__type__": ..., "__value__": ...}``). Tuples become lists, as
with any JSON queue.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .conf import settings
from .exceptions import ContentDisallowed, DecodeError, EncodeError


@dataclass(frozen=True)
class Serializer:
    """One way to turn values into stored text and back."""

    name: str
    content_type: str
    dumps: Callable[[Any], str]
    loads: Callable[[str], Any]


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"__type__": "datetime", "__value__": value.isoformat()}
    if isinstance(value, dt.date):
        return {"__type__": "date", "__value__": value.isoformat()}
    if isinstance(value, dt.time):
        return {"__type__": "time", "__value__": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"__type__": "timedelta", "__value__": value.total_seconds()}
    if isinstance(value, decimal.Decimal):
        return {"__type__": "decimal", "__value__": str(value)}
    if isinstance(value, uuid.UUID):
        return {"__type__": "uuid", "__value__": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"__type__": "bytes", "__value__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, set | frozenset):
        return {"__type__": "set", "__value__": list(value)}
    if hasattr(value, "__json__"):
        return value.__json__()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _hashable(value: Any) -> Any:
    # Set members were hashable when encoded, but JSON brings tuples back as
    # lists and frozensets as sets: turn them back into hashable forms.
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, set):
        return frozenset(value)
    return value


_JSON_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(seconds=v),
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
    "bytes": lambda v: base64.b64decode(v),
    "set": lambda v: {_hashable(item) for item in v},
}


def _json_object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        decoder = _JSON_DECODERS.get(obj["__type__"])
        if decoder is not None:
            return decoder(obj["__value__"])
    return obj


_encoder = json.JSONEncoder(default=_json_default, separators=(",", ":"), ensure_ascii=False)
_decoder = json.JSONDecoder(object_hook=_json_object_hook)

JSON = Serializer("json", "application/json", _encoder.encode, _decoder.decode)

_REGISTRY: dict[str, Serializer] = {JSON.name: JSON}
_BY_CONTENT_TYPE: dict[str, Serializer] = {JSON.content_type: JSON}


def register(serializer: Serializer) -> None:
    """Make ``serializer`` available by its name and content type."""
    _REGISTRY[serializer.name] = serializer
    _BY_CONTENT_TYPE[serializer.content_type] = serializer


def get(name: str) -> Serializer:
    """Return the serializer called ``name`` or raise ``ValueError``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown serializer {name!r} (known: {known})") from None


def encode_arguments(task_name: str, args: tuple | list, kwargs: dict,
                     serializer: str) -> tuple[str, str]:
    """Encode ``[args, kwargs]``; return ``(content_type, text)``.

    Raises :class:`EncodeError` naming the first argument that cannot be
    encoded, so the caller sees it at ``.delay()`` and not in the worker.
    """
    ser = get(serializer)
    try:
        return ser.content_type, ser.dumps([list(args), kwargs])
    except (TypeError, ValueError, OverflowError) as exc:
        for index, value in enumerate(args):
            _raise_if_unencodable(ser, value, f"positional argument {index}", task_name)
        for key, value in kwargs.items():
            _raise_if_unencodable(ser, value, f"keyword argument {key!r}", task_name)
        raise EncodeError(f"cannot encode the arguments of task {task_name!r} "
                          f"with {ser.name}: {exc}") from exc


def _raise_if_unencodable(ser: Serializer, value: Any, where: str, task_name: str) -> None:
    try:
        ser.dumps(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"{where} of task {task_name!r} cannot be encoded with "
                          f"{ser.name}: {exc}") from exc


def decode_arguments(content_type: str, text: str) -> tuple[list, dict]:
    """Decode a stored payload into ``(args, kwargs)``.

    Raises :class:`ContentDisallowed` for a content type this process does not
    accept and :class:`DecodeError` for anything that does not decode to a
    list and a dict.
    """
    value = decode(content_type, text)
    if (not isinstance(value, list) or len(value) != 2
            or not isinstance(value[0], list) or not isinstance(value[1], dict)):
        raise DecodeError("payload is not [args, kwargs]")
    return value[0], value[1]


def encode(value: Any, serializer: str) -> tuple[str, str]:
    """Encode one value (a result, progress meta); return ``(content_type, text)``."""
    ser = get(serializer)
    try:
        return ser.content_type, ser.dumps(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {type(value).__name__} with {ser.name}: {exc}") from exc


def accepted_content_types() -> frozenset[str]:
    """Content types named by ``DJTASKS_ACCEPT_CONTENT`` (names or MIME types)."""
    types = set()
    for item in settings.ACCEPT_CONTENT:
        ser = _REGISTRY.get(item) or _BY_CONTENT_TYPE.get(item)
        if ser is not None:
            types.add(ser.content_type)
    return frozenset(types)


def decode(content_type: str, text: str | None) -> Any:
    """Decode stored text of ``content_type``; ``None`` stays ``None``."""
    if text is None:
        return None
    ser = _BY_CONTENT_TYPE.get(content_type)
    if ser is None or content_type not in accepted_content_types():
        raise ContentDisallowed(
            f"content type {content_type!r} is not accepted (DJTASKS_ACCEPT_CONTENT)")
    try:
        return ser.loads(text)
    except Exception as exc:
        raise DecodeError(f"payload does not decode as {ser.name}: {exc}") from exc
