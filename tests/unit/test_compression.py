"""Compression: per call, per task, by setting, above a threshold; bounded decompression."""

from __future__ import annotations

import base64
import bz2
import os
import zlib
from typing import Any

import pytest

from djtasks import compression, serialization, task
from djtasks.exceptions import DecodeError, ImproperlyConfiguredTask

BIG = "x" * 5000  # compresses well
NOISE = base64.b64encode(os.urandom(3000)).decode()  # does not


def encode(*args: Any, compression: str | None = None, **kwargs: Any) -> tuple[str, str]:
    return serialization.encode_arguments("app.t", args, kwargs, "json", compression)


@pytest.mark.parametrize("name", ["zlib", "bzip2"])
def test_per_call_compression_round_trips(name: str) -> None:
    content_type, text = encode(BIG, n=1, compression=name)
    assert content_type == f"application/json; compression={name}"
    assert len(text) < 200
    assert serialization.decode_arguments(content_type, text) == ([BIG], {"n": 1})
    assert serialization.decode_arguments(content_type, text, task_name="app.t") == (
        [BIG],
        {"n": 1},
    )


def test_explicit_compression_applies_even_to_small_payloads() -> None:
    content_type, _ = encode(1, compression="zlib")
    assert content_type == "application/json; compression=zlib"


def test_setting_compresses_everything(settings: Any) -> None:
    settings.DJTASKS_COMPRESSION = "bzip2"
    assert encode(1)[0] == "application/json; compression=bzip2"
    assert encode(1, compression="zlib")[0] == "application/json; compression=zlib"


def test_threshold_compresses_large_payloads_only(settings: Any) -> None:
    settings.DJTASKS_COMPRESSION_THRESHOLD = 1000
    assert encode("small")[0] == "application/json"
    content_type, text = encode(BIG)
    assert content_type == "application/json; compression=zlib"
    assert serialization.decode_arguments(content_type, text) == ([BIG], {})


def test_threshold_with_a_setting_uses_that_compression(settings: Any) -> None:
    settings.DJTASKS_COMPRESSION = "bzip2"
    settings.DJTASKS_COMPRESSION_THRESHOLD = 1000
    assert encode("small")[0] == "application/json"
    assert encode(BIG)[0] == "application/json; compression=bzip2"


def test_automatic_compression_that_does_not_pay_is_skipped(settings: Any) -> None:
    settings.DJTASKS_COMPRESSION_THRESHOLD = 1000
    content_type, text = encode(NOISE)
    assert content_type == "application/json"
    assert serialization.decode_arguments(content_type, text) == ([NOISE], {})


def test_per_task_compression(temp_task: Any) -> None:
    t = temp_task(lambda data: None, compression="bzip2")
    message = t.build_message((BIG,))
    assert message.content_type == "application/json; compression=bzip2"
    message = t.build_message((BIG,), compression="zlib")
    assert message.content_type == "application/json; compression=zlib"


def test_unknown_compression_is_refused_at_the_call_and_at_the_task() -> None:
    with pytest.raises(ValueError, match=r"unknown compression 'lzma' \(known: bzip2, zlib\)"):
        encode(1, compression="lzma")
    with pytest.raises(ImproperlyConfiguredTask, match="unknown compression 'lzma'"):
        task(name="t.bad.compression", compression="lzma")(lambda: None)


# -- decoding hostile data ----------------------------------------------------------


@pytest.mark.parametrize(("name", "compress"), [("zlib", zlib.compress), ("bzip2", bz2.compress)])
def test_a_decompression_bomb_stops_at_the_payload_limit(
    settings: Any, name: str, compress: Any
) -> None:
    settings.DJTASKS_MAX_PAYLOAD_BYTES = 1_000_000
    bomb = base64.b64encode(compress(b"[[" + b" " * 50_000_000 + b"],{}]")).decode()
    assert len(bomb) < 100_000
    with pytest.raises(DecodeError, match="decompresses to more than 1000000 bytes"):
        serialization.decode_arguments(f"application/json; compression={name}", bomb)


@pytest.mark.parametrize("name", ["zlib", "bzip2"])
@pytest.mark.parametrize(
    "mangle",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "!!" + text,  # not base64
        lambda text: base64.b64encode(b"not compressed at all").decode(),
    ],
)
def test_corrupt_compressed_payloads_are_decode_errors(name: str, mangle: Any) -> None:
    content_type, text = encode(BIG, compression=name)
    with pytest.raises(DecodeError, match="payload is not valid"):
        serialization.decode_arguments(content_type, mangle(text))


def test_compressors_are_bounded_without_a_limit_too() -> None:
    data = zlib.compress(b"a" * 1000)
    assert compression.ZLIB.decompress(data, None) == b"a" * 1000
    with pytest.raises(compression.OutputTooLargeError):
        compression.ZLIB.decompress(data, 999)
    assert compression.BZIP2.decompress(bz2.compress(b"b" * 10), 10) == b"b" * 10


def test_a_custom_compressor_can_be_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    import lzma

    monkeypatch.setattr(compression, "_REGISTRY", dict(compression._REGISTRY))
    compression.register(
        compression.Compressor("xz", lzma.compress, lambda data, limit: lzma.decompress(data))
    )
    content_type, text = encode(BIG, compression="xz")
    assert content_type == "application/json; compression=xz"
    assert serialization.decode_arguments(content_type, text) == ([BIG], {})
    with pytest.raises(ValueError, match="must be an identifier"):
        compression.register(compression.Compressor("x;z", lzma.compress, lzma.decompress))
