"""serialization.py: JSON that round-trips Python values, and errors that name the culprit."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from djtasks import serialization
from djtasks.exceptions import ContentDisallowed, DecodeError, EncodeError

JSON = "application/json"
UTC = dt.UTC
PLUS_2 = dt.timezone(dt.timedelta(hours=2))


def roundtrip(value: Any) -> Any:
    content_type, text = serialization.encode(value, "json")
    assert content_type == JSON
    assert isinstance(text, str)
    return serialization.decode(content_type, text)


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC),
        dt.datetime(2024, 2, 29, 23, 59, 58, tzinfo=PLUS_2),
        dt.datetime(2024, 1, 1, 12, 0),  # naive stays naive
        dt.date(1999, 12, 31),
        dt.time(8, 30, 15, 500),
        dt.time(8, 30, tzinfo=PLUS_2),
        dt.timedelta(days=2, seconds=3, microseconds=4),
        decimal.Decimal("3.14159265358979323846264338327950288"),
        decimal.Decimal("-0.00"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        b"\x00\xffbinary\n",
        {1, 2, 3},
        set(),
        {(1, "a"), (2, "b")},
        {((1, 2), (3, 4)), frozenset({5})},
        {"nested": [decimal.Decimal("1.5"), {"when": dt.date(2020, 1, 1)}]},
        "naïve ☃ text",
        None,
        2**70,
    ],
)
def test_values_round_trip_with_their_type(value: Any) -> None:
    back = roundtrip(value)
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, dt.datetime | dt.time):
        assert back.utcoffset() == value.utcoffset()


def test_containers_json_cannot_tell_apart_become_lists_and_sets() -> None:
    assert roundtrip((1, (2, 3))) == [1, [2, 3]]
    assert roundtrip(frozenset({1})) == {1}
    assert roundtrip(bytearray(b"ab")) == b"ab"
    assert roundtrip(memoryview(b"ab")) == b"ab"


def test_text_the_database_cannot_hold_is_stored_escaped_and_round_trips() -> None:
    value = {"name": "file-\udcff.txt", "plain": "naïve"}
    _, text = serialization.encode(value, "json")
    text.encode("utf-8")  # storable: a lone surrogate is not UTF-8
    assert serialization.decode(JSON, text) == value
    _, readable = serialization.encode("naïve ☃", "json")
    assert readable == '"naïve ☃"'  # ordinary text stays unescaped


def test_a_dict_that_only_looks_tagged_stays_a_dict() -> None:
    value = {"__type__": "not-a-known-type", "__value__": 1}
    assert roundtrip(value) == value
    assert roundtrip({"__type__": "decimal", "__value__": "1", "more": 2}) == {
        "__type__": "decimal",
        "__value__": "1",
        "more": 2,
    }


def test_stored_form_is_plain_json() -> None:
    _, text = serialization.encode({"d": decimal.Decimal("1.10")}, "json")
    assert json.loads(text) == {"d": {"__type__": "decimal", "__value__": "1.10"}}


def test_arguments_round_trip_as_args_and_kwargs() -> None:
    content_type, text = serialization.encode_arguments(
        "t", (1, dt.date(2020, 5, 17)), {"amount": decimal.Decimal("9.99")}, "json"
    )
    args, kwargs = serialization.decode_arguments(content_type, text)
    assert args == [1, dt.date(2020, 5, 17)]
    assert kwargs == {"amount": decimal.Decimal("9.99")}


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(timezones=st.none() | st.just(UTC) | st.just(PLUS_2))
    | st.dates()
    | st.times()
    | st.uuids()
    | st.binary()
    # timedelta is stored as float seconds: exact to the microsecond while
    # |seconds| < 2**32 (136 years), which is where this stops.
    | st.timedeltas(min_value=dt.timedelta(days=-49_000), max_value=dt.timedelta(days=49_000))
)
_hashables = st.none() | st.booleans() | st.integers() | st.text() | st.uuids() | st.dates()
_values = st.recursive(
    _scalars
    | st.sets(_hashables, max_size=4)
    | st.sets(st.tuples(st.integers(), st.tuples(st.text())), max_size=3)
    | st.sets(st.frozensets(st.integers(), max_size=2), max_size=2),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


def _normalise(value: Any) -> Any:
    """What a value becomes through any JSON queue: tuples are lists."""
    if isinstance(value, tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


@given(_values)
def test_any_supported_value_round_trips(value: Any) -> None:
    assert roundtrip(value) == _normalise(value)


@given(st.lists(_values, max_size=3), st.dictionaries(st.text(), _values, max_size=3))
def test_any_supported_arguments_round_trip(args: list[Any], kwargs: dict[str, Any]) -> None:
    content_type, text = serialization.encode_arguments("t", args, kwargs, "json")
    assert serialization.decode_arguments(content_type, text) == (
        _normalise(args),
        _normalise(kwargs),
    )


# -- errors ----------------------------------------------------------------------


class Opaque:
    pass


def test_unencodable_positional_argument_is_named() -> None:
    with pytest.raises(
        EncodeError,
        match=r"positional argument 1 of task 'app.t' cannot be "
        r"encoded with json: .*Opaque",
    ):
        serialization.encode_arguments("app.t", [1, Opaque()], {}, "json")


def test_unencodable_keyword_argument_is_named() -> None:
    with pytest.raises(EncodeError, match=r"keyword argument 'thing' of task 'app.t'"):
        serialization.encode_arguments(
            "app.t", [1], {"ok": 2, "thing": {"deep": [Opaque()]}}, "json"
        )


def test_encode_error_is_a_type_error_too() -> None:
    # Code that catches TypeError around .delay() keeps working.
    with pytest.raises(TypeError):
        serialization.encode_arguments("t", [Opaque()], {}, "json")


def test_unencodable_value_says_which_type() -> None:
    with pytest.raises(EncodeError, match="cannot encode Opaque with json"):
        serialization.encode(Opaque(), "json")


def test_unknown_serializer_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown serializer 'no-such-format' \(known: .*json"):
        serialization.encode_arguments("t", [], {}, "no-such-format")


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2", "\x00"])
def test_payload_that_is_not_json_is_a_decode_error(text: str) -> None:
    with pytest.raises(DecodeError, match="payload does not decode as json"):
        serialization.decode_arguments(JSON, text)


@pytest.mark.parametrize("text", ['{"a": 1}', "[[], {}, 3]", "[{}, []]", "[1, {}]", "null"])
def test_payload_that_is_not_args_and_kwargs_is_a_decode_error(text: str) -> None:
    with pytest.raises(DecodeError, match=r"payload is not \[args, kwargs\]"):
        serialization.decode_arguments(JSON, text)


@pytest.mark.parametrize("content_type", ["application/x-python-serialize", "text/plain", ""])
def test_content_type_not_accepted_is_refused(content_type: str) -> None:
    with pytest.raises(ContentDisallowed, match="is not accepted"):
        serialization.decode_arguments(content_type, "[[], {}]")


def test_json_itself_can_be_refused_by_accept_content() -> None:
    with override_settings(DJTASKS_ACCEPT_CONTENT=["pickle"]), pytest.raises(ContentDisallowed):
        serialization.decode(JSON, "1")
    with override_settings(DJTASKS_ACCEPT_CONTENT=[JSON]):  # MIME type works as well as name
        assert serialization.decode(JSON, "1") == 1


def test_none_decodes_to_none() -> None:
    assert serialization.decode(JSON, None) is None
