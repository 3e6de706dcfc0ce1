"""Encoding of task arguments and results: serializers, compression, signatures, limits.

Serializers, by name:

``json`` (default, ``application/json``)
    Round-trips ``datetime``, ``date``, ``time``, ``timedelta``, ``Decimal``,
    ``UUID``, ``bytes`` and ``set`` through tagged objects
    (``{"__type__": ..., "__value__": ...}``). Tuples become lists, as with
    any JSON queue.
``msgpack`` (``application/x-msgpack``, extra ``djtasks[msgpack]``)
    The same types, with the same tags; bytes are native.
``yaml`` (``application/x-yaml``, extra ``djtasks[yaml]``)
    Safe YAML (no object construction) with ``!djtasks/...`` tags for the
    same types.
``pickle`` (``application/x-python-serialize``)
    Anything picklable. Decoding pickle runs code, so it is only accepted
    when ``DJTASKS_ACCEPT_CONTENT`` lists it, ``DJTASKS_SIGN_MESSAGES`` is on
    (a system check enforces both) and the payload's signature verifies.

How a payload is stored (the ``payload``/``result`` columns are text, and
``content_type`` says how to read them)::

    content type = <serializer MIME> [; compression=<zlib|bzip2>] [; hmac=sha256]
    text         = [<signature>:] <body>
    body         = serializer text                        (json, yaml, uncompressed)
                 | base64(serializer bytes)               (msgpack, pickle, uncompressed)
                 | base64(compress(serializer output))    (any serializer, compressed)

The signature (see :mod:`djtasks.message_signing`) covers the task name,
the whole content type and the body, so changing any of them, or moving a
payload to another task, makes a worker refuse the row. It travels in the
same column as the body, so every code path that rewrites a payload (a
retry with new arguments) rewrites its signature with it, and results and
progress meta are covered the same way.

The JSON path with no signing and no compression returns the serializer's
text unchanged: it is on the enqueue hot path.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import importlib
import json
import pickle
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.signals import setting_changed

from . import compression as compressors
from . import message_signing
from .conf import settings
from .exceptions import ContentDisallowed, DecodeError, EncodeError

#: The longest content type the ``content_type`` columns hold.
MAX_CONTENT_TYPE_LENGTH = 64


class PayloadTooLarge(EncodeError):  # noqa: N818 - reads as the condition, like ContentDisallowed
    """The serialized arguments are larger than ``DJTASKS_MAX_PAYLOAD_BYTES``."""


class BadSignature(DecodeError):  # noqa: N818 - the name django.core.signing uses
    """A payload is unsigned where a signature is required, or its signature does not verify."""


@dataclass(frozen=True)
class Serializer:
    """One way to turn values into stored data and back.

    ``dumps`` returns text, or bytes when ``binary`` (stored as base64).
    ``unsafe`` marks a serializer whose ``loads`` can run code (pickle): its
    payloads are decoded only after their signature verifies. ``module`` is
    a package it needs, named in the error with ``extra`` when missing.
    """

    name: str
    content_type: str
    dumps: Callable[[Any], Any]
    loads: Callable[[Any], Any]
    binary: bool = False
    unsafe: bool = False
    module: str | None = None
    extra: str | None = None


# -- type tags shared by json and msgpack ------------------------------------------


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


def _json_object_hook(obj: dict[Any, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        decoder = _JSON_DECODERS.get(obj["__type__"])
        if decoder is not None:
            return decoder(obj["__value__"])
    return obj


_encoder = json.JSONEncoder(default=_json_default, separators=(",", ":"), ensure_ascii=False)
_ascii_encoder = json.JSONEncoder(default=_json_default, separators=(",", ":"))
_decoder = json.JSONDecoder(object_hook=_json_object_hook)


def _json_dumps(value: Any) -> str:
    text = _encoder.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate ("\ud800") is a valid Python str but not UTF-8,
            # so the database would refuse the row; escaped JSON holds it.
            text = _ascii_encoder.encode(value)
    return text


JSON = Serializer("json", "application/json", _json_dumps, _decoder.decode)


# -- msgpack -------------------------------------------------------------------------


def _msgpack_dumps(value: Any) -> bytes:
    import msgpack

    try:
        return msgpack.packb(value, default=_json_default, use_bin_type=True)
    except msgpack.PackException as exc:  # e.g. nesting too deep
        raise ValueError(str(exc)) from exc


def _msgpack_loads(data: bytes) -> Any:
    import msgpack

    # strict_map_key=False: dicts with int keys (a result) come back as sent.
    return msgpack.unpackb(data, object_hook=_json_object_hook, raw=False, strict_map_key=False)


MSGPACK = Serializer(
    "msgpack",
    "application/x-msgpack",
    _msgpack_dumps,
    _msgpack_loads,
    binary=True,
    module="msgpack",
    extra="msgpack",
)


# -- yaml ----------------------------------------------------------------------------

_yaml_classes: tuple[Any, Any] | None = None


def _yaml() -> tuple[Any, Any]:
    """A safe dumper and loader with tags for the types json tags (built once)."""
    global _yaml_classes
    if _yaml_classes is not None:
        return _yaml_classes
    import yaml

    base_dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    base_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    dumper = type("DjtasksYamlDumper", (base_dumper,), {})
    loader = type("DjtasksYamlLoader", (base_loader,), {})

    def scalar(
        tag: str, cls: type, to_text: Callable[[Any], str], from_text: Callable[[str], Any]
    ) -> None:
        dumper.add_representer(cls, lambda d, v: d.represent_scalar(tag, to_text(v)))
        loader.add_constructor(tag, lambda ld, node: from_text(ld.construct_scalar(node)))

    # Tags rather than YAML's own timestamps: those lose fixed offsets and
    # cannot tell a naive datetime from a UTC one.
    scalar("!djtasks/datetime", dt.datetime, dt.datetime.isoformat, dt.datetime.fromisoformat)
    scalar("!djtasks/time", dt.time, dt.time.isoformat, dt.time.fromisoformat)
    scalar(
        "!djtasks/timedelta",
        dt.timedelta,
        lambda v: repr(v.total_seconds()),
        lambda s: dt.timedelta(seconds=float(s)),
    )
    scalar("!djtasks/decimal", decimal.Decimal, str, decimal.Decimal)
    scalar("!djtasks/uuid", uuid.UUID, str, uuid.UUID)
    for cls in (set, frozenset):
        dumper.add_representer(cls, lambda d, v: d.represent_sequence("!djtasks/set", list(v)))
    loader.add_constructor(
        "!djtasks/set",
        lambda ld, node: {_hashable(i) for i in ld.construct_sequence(node, deep=True)},
    )
    dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))
    for cls in (bytearray, memoryview):
        dumper.add_representer(cls, lambda d, v: d.represent_binary(bytes(v)))
    _yaml_classes = (dumper, loader)
    return _yaml_classes


def _yaml_dumps(value: Any) -> str:
    import yaml

    try:
        return yaml.dump(value, Dumper=_yaml()[0], allow_unicode=True, sort_keys=False)
    except yaml.YAMLError as exc:
        raise TypeError(str(exc)) from exc


def _yaml_loads(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=_yaml()[1])  # noqa: S506 - a SafeLoader subclass


YAML = Serializer(
    "yaml", "application/x-yaml", _yaml_dumps, _yaml_loads, module="yaml", extra="yaml"
)


# -- pickle --------------------------------------------------------------------------

#: Protocol 5 is read by every Python djtasks supports, so mixed versions interoperate.
PICKLE_PROTOCOL = 5


def _pickle_dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=PICKLE_PROTOCOL)
    except (pickle.PicklingError, AttributeError) as exc:
        raise TypeError(str(exc)) from exc


PICKLE = Serializer(
    "pickle",
    "application/x-python-serialize",
    _pickle_dumps,
    pickle.loads,
    binary=True,
    unsafe=True,
)


# -- registry ------------------------------------------------------------------------

_REGISTRY: dict[str, Serializer] = {}
_BY_CONTENT_TYPE: dict[str, Serializer] = {}
_INSTALLED: set[str] = set()


def register(serializer: Serializer) -> None:
    """Make ``serializer`` available by its name and content type."""
    if ";" in serializer.content_type:
        raise ValueError(
            f"a serializer content type is a bare MIME type, not {serializer.content_type!r}"
        )
    _REGISTRY[serializer.name] = serializer
    _BY_CONTENT_TYPE[serializer.content_type] = serializer
    _reset()


def _require(ser: Serializer) -> None:
    if ser.name in _INSTALLED:
        return
    try:
        importlib.import_module(ser.module or "")
    except ImportError:
        raise ValueError(
            f"the {ser.name} serializer needs the {ser.module} package, which is not "
            f"installed: pip install 'djtasks[{ser.extra or ser.module}]'"
        ) from None
    _INSTALLED.add(ser.name)


def get(name: str) -> Serializer:
    """Return the serializer called ``name``.

    :raises ValueError: for an unknown name (listing the known ones), or a
        serializer whose package is not installed (naming the extra to install).
    """
    ser = _REGISTRY.get(name) if isinstance(name, str) else None
    if ser is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown serializer {name!r} (known: {known})")
    if ser.module is not None:
        _require(ser)
    return ser


def names() -> list[str]:
    """The registered serializer names."""
    return sorted(_REGISTRY)


def lookup(name_or_content_type: Any) -> Serializer | None:
    """The registered serializer with this name or MIME type, installed or not."""
    if not isinstance(name_or_content_type, str):
        return None
    return _REGISTRY.get(name_or_content_type) or _BY_CONTENT_TYPE.get(name_or_content_type)


# -- settings, read once per change --------------------------------------------------


@dataclass(frozen=True)
class _Policy:
    sign: bool
    compression: str | None
    threshold: int | None
    max_bytes: int | None
    accepted: frozenset[str]
    plain: bool  # neither signing nor any compression: payloads are the serializer's text


_policy: _Policy | None = None


def _load_policy() -> _Policy:
    global _policy
    accepted = set()
    for item in settings.ACCEPT_CONTENT:
        ser = lookup(item)
        if ser is not None:
            accepted.add(ser.content_type)
    sign = bool(settings.SIGN_MESSAGES)
    compression = settings.COMPRESSION or None
    threshold = settings.COMPRESSION_THRESHOLD
    _policy = _Policy(
        sign=sign,
        compression=compression,
        threshold=threshold,
        max_bytes=settings.MAX_PAYLOAD_BYTES,
        accepted=frozenset(accepted),
        plain=not sign and compression is None and threshold is None,
    )
    return _policy


def _reset(**kwargs: Any) -> None:
    global _policy
    _policy = None
    _FORMATS.clear()


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    # override_settings() and the settings fixture announce every change.
    if setting.startswith("DJTASKS_"):
        _reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="djtasks.serialization")


def accepted_content_types() -> frozenset[str]:
    """Content types named by ``DJTASKS_ACCEPT_CONTENT`` (names or MIME types)."""
    return (_policy or _load_policy()).accepted


# -- content types -------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """What a stored content type says: serializer, compression, signed."""

    serializer: Serializer
    compressor: compressors.Compressor | None
    signed: bool

    @property
    def content_type(self) -> str:
        ct = self.serializer.content_type
        if self.compressor is not None:
            ct += f"; compression={self.compressor.name}"
        if self.signed:
            ct += f"; hmac={message_signing.SCHEME}"
        return ct


_FORMATS: dict[str, Format] = {}


def parse_content_type(content_type: str) -> Format:
    """Read a stored content type.

    :raises ContentDisallowed: the serializer is not known here.
    :raises DecodeError: a parameter is not understood.
    """
    fmt = _FORMATS.get(content_type)
    if fmt is not None:
        return fmt
    base, *params = content_type.split(";")
    ser = _BY_CONTENT_TYPE.get(base.strip())
    if ser is None:
        raise ContentDisallowed(
            f"content type {content_type!r} is not accepted (DJTASKS_ACCEPT_CONTENT)"
        )
    comp: compressors.Compressor | None = None
    signed = False
    for param in params:
        key, _, value = param.strip().partition("=")
        if key == "compression" and comp is None:
            try:
                comp = compressors.get(value)
            except ValueError as exc:
                raise DecodeError(f"content type {content_type!r}: {exc}") from None
        elif key == "hmac" and not signed and value == message_signing.SCHEME:
            signed = True
        else:
            raise DecodeError(
                f"content type {content_type!r}: parameter {param.strip()!r} is not understood"
            )
    fmt = Format(ser, comp, signed)
    if fmt.content_type == content_type:
        # Only canonical spellings are cached, so hostile rows cannot grow the cache.
        _FORMATS[content_type] = fmt
    return fmt


# -- encoding ------------------------------------------------------------------------


def _size(raw: str | bytes) -> int:
    if isinstance(raw, bytes) or raw.isascii():  # isascii() is O(1) on str
        return len(raw)
    return len(raw.encode())


def _seal(
    kind: str,
    name: str,
    ser: Serializer,
    raw: str | bytes,
    compressor: compressors.Compressor | None,
    sign: bool,
    optional_compression: bool = False,
) -> tuple[str, str]:
    """Compress, base64 and sign ``raw`` as the content type will say."""
    if compressor is not None:
        data = raw.encode() if isinstance(raw, str) else raw
        body = base64.b64encode(compressor.compress(data)).decode("ascii")
        if optional_compression and len(body) >= _size(raw):
            # Automatic compression that does not pay is not applied.
            return _seal(kind, name, ser, raw, None, sign)
    elif ser.binary:
        body = base64.b64encode(raw).decode("ascii")  # type: ignore[arg-type]
    else:
        body = raw  # type: ignore[assignment]
    content_type = Format(ser, compressor, sign).content_type
    if len(content_type) > MAX_CONTENT_TYPE_LENGTH:
        raise EncodeError(
            f"content type {content_type!r} is longer than {MAX_CONTENT_TYPE_LENGTH} characters"
        )
    if sign:
        body = f"{message_signing.sign(kind, name, content_type, body)}:{body}"
    return content_type, body


def encode_arguments(
    task_name: str,
    args: tuple | list,
    kwargs: dict,
    serializer: str,
    compression: str | None = None,
) -> tuple[str, str]:
    """Encode ``[args, kwargs]`` for task ``task_name``; return ``(content_type, text)``.

    ``compression`` (a name) always compresses; without it,
    ``DJTASKS_COMPRESSION`` and ``DJTASKS_COMPRESSION_THRESHOLD`` decide.
    The text is signed when ``DJTASKS_SIGN_MESSAGES`` is on.

    :raises EncodeError: naming the first argument that cannot be encoded,
        so the caller sees it at ``.delay()`` and not in the worker.
    :raises PayloadTooLarge: the serialized arguments exceed
        ``DJTASKS_MAX_PAYLOAD_BYTES`` (the message gives the size and the limit).
    :raises ValueError: an unknown serializer or compression, or a
        serializer whose package is not installed.
    """
    ser = _REGISTRY.get(serializer) if type(serializer) is str else None
    if ser is None or ser.module is not None:
        ser = get(serializer)
    try:
        raw = ser.dumps([list(args), kwargs])
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        for index, value in enumerate(args):
            _raise_if_unencodable(ser, value, f"positional argument {index}", task_name)
        for key, value in kwargs.items():
            _raise_if_unencodable(ser, value, f"keyword argument {key!r}", task_name)
        raise EncodeError(
            f"cannot encode the arguments of task {task_name!r} with {ser.name}: {exc}"
        ) from exc
    policy = _policy or _load_policy()
    # A character is at most 4 bytes: count bytes only near the limit.
    if (
        policy.max_bytes is not None
        and len(raw) * 4 > policy.max_bytes
        and (size := _size(raw)) > policy.max_bytes
    ):
        raise PayloadTooLarge(
            f"the arguments of task {task_name!r} are {size:,} bytes serialized with "
            f"{ser.name}, over the limit of {policy.max_bytes:,} bytes "
            "(DJTASKS_MAX_PAYLOAD_BYTES): store large data elsewhere (a file, a row) "
            "and pass its key"
        )
    if compression is None and policy.plain and not ser.binary:
        return ser.content_type, raw  # the hot path: json, as the serializer wrote it
    optional = False
    if compression is None:
        if policy.threshold is None:
            compression = policy.compression
        elif _size(raw) > policy.threshold:
            compression, optional = policy.compression or "zlib", True
    if compression is None and not policy.sign and not ser.binary:
        return ser.content_type, raw
    if ser.unsafe and not policy.sign:
        raise EncodeError(f"the {ser.name} serializer needs DJTASKS_SIGN_MESSAGES = True")
    compressor = compressors.get(compression) if compression is not None else None
    return _seal("args", task_name, ser, raw, compressor, policy.sign, optional)


def reencode_arguments(task_name: str, content_type: str, args: list | tuple, kwargs: dict) -> str:
    """Encode new arguments for a stored task so that they fit its ``content_type``.

    Used when a retry replaces the arguments of a row whose content type
    stays: same serializer and compression, and signed if it was.
    """
    fmt = parse_content_type(content_type)
    ser = fmt.serializer
    if ser.module is not None:
        _require(ser)
    try:
        raw = ser.dumps([list(args), kwargs])
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EncodeError(
            f"cannot encode the arguments of task {task_name!r} with {ser.name}: {exc}"
        ) from exc
    return _seal("args", task_name, ser, raw, fmt.compressor, fmt.signed)[1]


def _raise_if_unencodable(ser: Serializer, value: Any, where: str, task_name: str) -> None:
    try:
        ser.dumps(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EncodeError(
            f"{where} of task {task_name!r} cannot be encoded with {ser.name}: {exc}"
        ) from exc


def encode(value: Any, serializer: str) -> tuple[str, str]:
    """Encode one value (a result, progress meta); return ``(content_type, text)``.

    Signed when ``DJTASKS_SIGN_MESSAGES`` is on; never compressed.
    """
    ser = get(serializer)
    try:
        raw = ser.dumps(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EncodeError(f"cannot encode {type(value).__name__} with {ser.name}: {exc}") from exc
    policy = _policy or _load_policy()
    if not policy.sign and not ser.binary:
        return ser.content_type, raw
    if ser.unsafe and not policy.sign:
        raise EncodeError(f"the {ser.name} serializer needs DJTASKS_SIGN_MESSAGES = True")
    return _seal("result", "", ser, raw, None, policy.sign)


# -- decoding ------------------------------------------------------------------------


def _open(
    content_type: str, text: str, kind: str, name: str | None, require_signature: bool
) -> Any:
    """Check, verify and decode stored ``text``.

    ``name=None`` skips verification (display only): then payloads of an
    unsafe serializer are refused, since nothing vouches for them.
    """
    fmt = parse_content_type(content_type)
    ser = fmt.serializer
    policy = _policy or _load_policy()
    if ser.content_type not in policy.accepted:
        raise ContentDisallowed(
            f"content type {content_type!r} is not accepted (DJTASKS_ACCEPT_CONTENT)"
        )
    body = text
    if fmt.signed:
        signature, sep, body = text.partition(":")
        if not sep:
            raise BadSignature(
                "the payload has no signature although its content type says it is signed"
            )
        if name is not None and not message_signing.verify(
            kind, name, content_type, body, signature
        ):
            what = f"task {name!r}" if kind == "args" else "this result"
            raise BadSignature(
                f"the signature does not verify for {what}: the row was changed, moved from "
                "another task, or signed with a key that is neither DJTASKS_SIGNING_KEY / "
                "SECRET_KEY nor one of their fallbacks"
            )
    elif ser.unsafe:
        raise BadSignature(
            f"the payload is not signed, and {ser.name} payloads are only "
            "decoded with a valid signature"
        )
    elif require_signature:
        raise BadSignature(
            "the payload is not signed, and DJTASKS_SIGN_MESSAGES = True requires a signature"
        )
    if ser.unsafe and name is None:
        raise ContentDisallowed(
            f"{ser.name} payloads are only decoded once their signature "
            "is verified, which needs the task name"
        )
    if ser.module is not None:
        try:
            _require(ser)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
    try:
        if fmt.compressor is not None:
            data: str | bytes = fmt.compressor.decompress(
                base64.b64decode(body, validate=True), policy.max_bytes
            )
            if not ser.binary:
                data = data.decode()
        elif ser.binary:
            data = base64.b64decode(body, validate=True)
        else:
            data = body
    except compressors.OutputTooLargeError as exc:
        raise DecodeError(f"payload {exc}, over DJTASKS_MAX_PAYLOAD_BYTES") from None
    except (ValueError, binascii.Error, OSError, EOFError, zlib.error) as exc:
        what = fmt.compressor.name if fmt.compressor is not None else "base64"
        raise DecodeError(f"payload is not valid {what} data: {exc}") from exc
    try:
        return ser.loads(data)
    except Exception as exc:
        raise DecodeError(f"payload does not decode as {ser.name}: {exc}") from exc


def decode_arguments(
    content_type: str, text: str, task_name: str | None = None
) -> tuple[list, dict]:
    """Decode a stored payload into ``(args, kwargs)``.

    Workers pass ``task_name``: the signature is then verified, and required
    when ``DJTASKS_SIGN_MESSAGES`` is on or the serializer is unsafe. Without
    it (to show a row) safe payloads are decoded unverified and unsafe ones
    are refused.

    :raises ContentDisallowed: a content type this process does not accept.
    :raises BadSignature: a missing or failing signature.
    :raises DecodeError: anything that does not decode to a list and a dict.
    """
    require = task_name is not None and (_policy or _load_policy()).sign
    value = _open(content_type, text, "args", task_name, require)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], list)
        or not isinstance(value[1], dict)
    ):
        raise DecodeError("payload is not [args, kwargs]")
    return value[0], value[1]


def decode(content_type: str, text: str | None) -> Any:
    """Decode a stored result or progress meta; ``None`` stays ``None``.

    A signature, when there is one, is verified; unsafe serializers need one.
    """
    if text is None:
        return None
    return _open(content_type, text, "result", "", False)


for _serializer in (JSON, MSGPACK, YAML, PICKLE):
    register(_serializer)
