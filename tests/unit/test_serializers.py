"""msgpack, yaml and pickle: round trips, content types, missing packages, and pickle's rules."""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import given

from djtasks import serialization
from djtasks.exceptions import ContentDisallowed, DecodeError, EncodeError, ImproperlyConfiguredTask
from djtasks.serialization import BadSignature
from tests.unit.test_serialization import _normalise, _values

HAS = {name: importlib.util.find_spec(name) is not None for name in ("msgpack", "yaml")}
ALL = ["json", "msgpack", "yaml", "pickle"]


def needs(name: str) -> Any:
    return pytest.param(
        name,
        marks=pytest.mark.skipif(
            not HAS.get(name, True),
            reason=f"{name} is not installed (pip install 'djtasks[{name}]')",
        ),
    )


SERIALIZERS = [needs(name) for name in ALL]
PLUS_2 = dt.timezone(dt.timedelta(hours=2))


@pytest.fixture(autouse=True)
def accept_everything(settings: Any) -> None:
    settings.DJTASKS_ACCEPT_CONTENT = ALL
    settings.DJTASKS_SIGN_MESSAGES = True  # pickle needs it; the others do not mind


RICH = {
    "aware": dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=PLUS_2),
    "naive": dt.datetime(2024, 1, 1, 12, 0),
    "date": dt.date(1999, 12, 31),
    "time": dt.time(8, 30, 15, 500, tzinfo=dt.UTC),
    "delta": dt.timedelta(days=2, seconds=3, microseconds=4),
    "decimal": decimal.Decimal("3.14159265358979323846264338327950288"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": b"\x00\xffbinary\n",
    "set": {(1, "a"), (2, "b")},
    "nested": [{"deep": {frozenset({5})}}, None, True, 1.5, -(2**63)],
    "text": "naïve ☃ text\nwith: yaml-ish -- things & 'quotes'",
    "empty": [{}, [], "", set()],
}


def roundtrip(value: Any, serializer: str) -> Any:
    content_type, text = serialization.encode(value, serializer)
    assert isinstance(text, str)
    return serialization.decode(content_type, text)


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_rich_values_keep_their_types(serializer: str) -> None:
    back = roundtrip(RICH, serializer)
    assert back == RICH
    for key, value in RICH.items():
        assert type(back[key]) is type(value), key
    assert back["aware"].utcoffset() == RICH["aware"].utcoffset()
    assert back["naive"].tzinfo is None


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_arguments_round_trip(serializer: str) -> None:
    content_type, text = serialization.encode_arguments(
        "app.t", (1, RICH["decimal"]), {"when": RICH["aware"]}, serializer
    )
    args, kwargs = serialization.decode_arguments(content_type, text, task_name="app.t")
    assert args == [1, RICH["decimal"]]
    assert kwargs == {"when": RICH["aware"]}


@pytest.mark.parametrize("serializer", [needs("msgpack"), needs("yaml")])
@given(value=_values)
def test_any_supported_value_round_trips(serializer: str, value: Any) -> None:
    if serializer == "msgpack":
        # msgpack integers are 64-bit: bigger ones are an EncodeError (tested below).
        def small(v: Any) -> bool:
            if isinstance(v, int) and not isinstance(v, bool):
                return -(2**63) <= v < 2**64
            if isinstance(v, list | tuple | set | frozenset):
                return all(small(x) for x in v)
            if isinstance(v, dict):
                return all(small(x) for x in v.values())
            return True

        if not small(value):
            return
    with override_settings(DJTASKS_SIGN_MESSAGES=False):
        assert roundtrip(value, serializer) == _normalise(value)


@pytest.mark.parametrize("serializer", [needs("msgpack"), needs("yaml"), "pickle"])
def test_what_each_makes_of_a_tuple(serializer: str) -> None:
    # Like json, msgpack and yaml have no tuple; pickle keeps it.
    expected = (1, (2, 3)) if serializer == "pickle" else [1, [2, 3]]
    assert roundtrip((1, (2, 3)), serializer) == expected


def test_pickle_keeps_any_picklable_object() -> None:
    value = decimal.Context(prec=7)
    assert roundtrip(value, "pickle").prec == 7


@pytest.mark.parametrize(
    ("serializer", "content_type"),
    [
        ("json", "application/json"),
        pytest.param(
            "msgpack",
            "application/x-msgpack",
            marks=pytest.mark.skipif(not HAS["msgpack"], reason="no msgpack"),
        ),
        pytest.param(
            "yaml",
            "application/x-yaml",
            marks=pytest.mark.skipif(not HAS["yaml"], reason="no yaml"),
        ),
        ("pickle", "application/x-python-serialize"),
    ],
)
def test_content_types(serializer: str, content_type: str) -> None:
    with override_settings(DJTASKS_SIGN_MESSAGES=serializer == "pickle"):
        assert serialization.encode_arguments("t", [], {}, serializer)[0] == (
            content_type + ("; hmac=sha256" if serializer == "pickle" else "")
        )


@pytest.mark.parametrize("serializer", [needs("msgpack"), "pickle"])
def test_binary_serializers_are_stored_as_base64_text(serializer: str) -> None:
    _, text = serialization.encode_arguments("t", [b"\x00" * 10], {}, serializer)
    body = text.partition(":")[2]
    assert body.isascii() and "\x00" not in body


def test_yaml_is_readable_text() -> None:
    if not HAS["yaml"]:
        pytest.skip("no yaml")
    with override_settings(DJTASKS_SIGN_MESSAGES=False):
        _, text = serialization.encode_arguments(
            "t", [1], {"amount": decimal.Decimal("9.99"), "who": "me"}, "yaml"
        )
    assert "amount: !djtasks/decimal 9.99" in text
    assert "who: me" in text


def test_yaml_never_constructs_python_objects() -> None:
    if not HAS["yaml"]:
        pytest.skip("no yaml")
    hostile = "- !!python/object/apply:os.system ['echo pwned']\n- {}\n"
    with (
        override_settings(DJTASKS_SIGN_MESSAGES=False),
        pytest.raises(DecodeError, match="does not decode as yaml"),
    ):
        serialization.decode_arguments("application/x-yaml", hostile, task_name="t")


# -- encode errors ---------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize("serializer", [needs("msgpack"), needs("yaml")])
def test_unencodable_argument_is_named(serializer: str) -> None:
    with pytest.raises(
        EncodeError,
        match=rf"keyword argument 'x' of task 't' cannot be encoded "
        rf"with {serializer}",
    ):
        serialization.encode_arguments("t", [1], {"x": Opaque()}, serializer)


def test_msgpack_refuses_integers_over_64_bits() -> None:
    if not HAS["msgpack"]:
        pytest.skip("no msgpack")
    with pytest.raises(EncodeError, match="positional argument 0"):
        serialization.encode_arguments("t", [2**70], {}, "msgpack")


def test_pickle_names_what_cannot_be_pickled() -> None:
    with pytest.raises(
        EncodeError, match="positional argument 1 of task 't' cannot be encoded with pickle"
    ):
        serialization.encode_arguments("t", [1, lambda: None], {}, "pickle")


# -- pickle's rules --------------------------------------------------------------


def test_pickle_is_not_encoded_without_signing() -> None:
    with (
        override_settings(DJTASKS_SIGN_MESSAGES=False),
        pytest.raises(EncodeError, match="pickle serializer needs DJTASKS_SIGN_MESSAGES"),
    ):
        serialization.encode_arguments("t", [1], {}, "pickle")


def test_unsigned_pickle_is_never_decoded() -> None:
    import base64
    import pickle

    text = base64.b64encode(pickle.dumps([[], {}])).decode()
    for sign in (True, False):
        with (
            override_settings(DJTASKS_SIGN_MESSAGES=sign),
            pytest.raises(
                BadSignature, match="pickle payloads are only decoded with a valid signature"
            ),
        ):
            serialization.decode_arguments("application/x-python-serialize", text, task_name="t")


def test_pickle_is_not_decoded_to_show_a_row_without_the_task_name() -> None:
    content_type, text = serialization.encode_arguments("t", [1], {}, "pickle")
    with pytest.raises(ContentDisallowed, match="needs the task name"):
        serialization.decode_arguments(content_type, text)
    assert serialization.decode_arguments(content_type, text, task_name="t") == ([1], {})


def test_pickle_not_in_accept_content_is_refused(settings: Any) -> None:
    content_type, text = serialization.encode_arguments("t", [1], {}, "pickle")
    settings.DJTASKS_ACCEPT_CONTENT = ["json"]
    with pytest.raises(ContentDisallowed, match="is not accepted"):
        serialization.decode_arguments(content_type, text, task_name="t")


# -- missing packages --------------------------------------------------------------


@pytest.fixture(params=["msgpack", "yaml"])
def missing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Pretend the package of one optional serializer is not installed."""
    name = request.param
    monkeypatch.setitem(sys.modules, name, None)  # makes "import name" fail
    monkeypatch.setattr(serialization, "_INSTALLED", set())
    yield name


def test_missing_package_names_the_extra(missing: str) -> None:
    with pytest.raises(
        ValueError,
        match=rf"the {missing} serializer needs the {missing} "
        rf"package.*pip install 'djtasks\[{missing}\]'",
    ):
        serialization.encode_arguments("t", [1], {}, missing)


def test_missing_package_at_task_definition(missing: str) -> None:
    from djtasks.task import Task

    with pytest.raises(ImproperlyConfiguredTask, match=rf"djtasks\[{missing}\]"):
        Task(lambda: None, name="t.missing", serializer=missing)


def test_missing_package_in_a_worker_is_a_decode_error(missing: str) -> None:
    content_type = serialization.lookup(missing).content_type  # type: ignore[union-attr]
    with (
        override_settings(DJTASKS_SIGN_MESSAGES=False),
        pytest.raises(DecodeError, match=rf"djtasks\[{missing}\]"),
    ):
        serialization.decode_arguments(content_type, "irrelevant", task_name="t")


# -- content types ---------------------------------------------------------------


def test_every_combination_fits_the_column() -> None:
    from djtasks import compression

    for name in serialization.names():
        ser = serialization.lookup(name)
        assert ser is not None
        for comp in [None, *compression.names()]:
            fmt = serialization.Format(ser, comp and compression.get(comp), True)
            assert len(fmt.content_type) <= serialization.MAX_CONTENT_TYPE_LENGTH


@pytest.mark.parametrize(
    ("content_type", "error", "message"),
    [
        ("application/json; compression=lzma", DecodeError, "unknown compression 'lzma'"),
        (
            "application/json; charset=utf-8",
            DecodeError,
            "parameter 'charset=utf-8' is not understood",
        ),
        ("application/json; hmac=md5", DecodeError, "parameter 'hmac=md5' is not understood"),
        ("text/plain", ContentDisallowed, "is not accepted"),
    ],
)
def test_content_types_that_are_not_understood(
    content_type: str, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        serialization.decode_arguments(content_type, "[[], {}]", task_name="t")


def test_a_non_canonical_spelling_is_read_but_not_cached() -> None:
    fmt = serialization.parse_content_type("application/json ;compression=zlib")
    assert fmt.compressor is not None and fmt.compressor.name == "zlib"
    assert "application/json ;compression=zlib" not in serialization._FORMATS
