"""DJTASKS_MAX_PAYLOAD_BYTES: refused at the call, with the size and the limit."""

from __future__ import annotations

from typing import Any

import pytest

from djtasks import serialization
from djtasks.serialization import PayloadTooLarge


def test_default_is_a_few_megabytes() -> None:
    from djtasks.conf import DEFAULTS

    assert DEFAULTS["MAX_PAYLOAD_BYTES"] == 4 * 1024 * 1024


def test_the_limit_counts_bytes_not_characters(settings: Any) -> None:
    settings.DJTASKS_MAX_PAYLOAD_BYTES = 1000
    serialization.encode_arguments("t", ["é" * 400], {}, "json")  # 800 bytes
    with pytest.raises(PayloadTooLarge, match="1,209 bytes"):
        serialization.encode_arguments("t", ["é" * 600], {}, "json")
    with pytest.raises(PayloadTooLarge, match="are 1,008 bytes"):
        serialization.encode_arguments("t", ["€" * 333], {}, "json")


def test_the_limit_is_on_the_serialized_size_before_compression(settings: Any) -> None:
    # What a worker must hold in memory; compression only saves table space.
    settings.DJTASKS_MAX_PAYLOAD_BYTES = 1000
    with pytest.raises(PayloadTooLarge):
        serialization.encode_arguments("t", ["x" * 2000], {}, "json", "zlib")


def test_binary_serializers_are_limited_too(settings: Any) -> None:
    settings.DJTASKS_MAX_PAYLOAD_BYTES = 1000
    settings.DJTASKS_SIGN_MESSAGES = True
    with pytest.raises(PayloadTooLarge, match="serialized with pickle"):
        serialization.encode_arguments("t", [b"\x00" * 2000], {}, "pickle")


def test_none_disables_the_limit(settings: Any) -> None:
    settings.DJTASKS_MAX_PAYLOAD_BYTES = None
    serialization.encode_arguments("t", ["x" * 5_000_000], {}, "json")


def test_too_large_is_an_encode_error() -> None:
    from djtasks.exceptions import EncodeError

    assert issubclass(PayloadTooLarge, EncodeError)
