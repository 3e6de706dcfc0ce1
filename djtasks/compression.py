"""Compression of stored payloads, by name: ``zlib`` and ``bzip2``.

A compressed payload is stored as base64 text (the column is text) and its
content type says how: ``application/json; compression=zlib``. Decompression
is bounded, so a small hostile row cannot expand into gigabytes in a worker.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class OutputTooLargeError(ValueError):
    """Decompressed data would be larger than the limit it was given."""


@dataclass(frozen=True)
class Compressor:
    """One compression scheme.

    ``decompress(data, limit)`` returns at most ``limit`` bytes (``None``: no
    limit) and raises :class:`OutputTooLargeError` if there is more.
    """

    name: str
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes, int | None], bytes]


def _bounded(decompressor: Any, data: bytes, limit: int) -> bytes:
    # Ask for one byte more than allowed: getting it means the input expands
    # past the limit, and we stop there instead of inflating all of it.
    out = decompressor.decompress(data, limit + 1)
    if len(out) > limit:
        raise OutputTooLargeError(f"decompresses to more than {limit} bytes")
    if not decompressor.eof:
        raise ValueError("truncated compressed data")
    return out


def _zlib_decompress(data: bytes, limit: int | None) -> bytes:
    if limit is None:
        return zlib.decompress(data)
    return _bounded(zlib.decompressobj(), data, limit)


def _bz2_decompress(data: bytes, limit: int | None) -> bytes:
    if limit is None:
        return bz2.decompress(data)
    return _bounded(bz2.BZ2Decompressor(), data, limit)


ZLIB = Compressor("zlib", zlib.compress, _zlib_decompress)
BZIP2 = Compressor("bzip2", bz2.compress, _bz2_decompress)

_REGISTRY: dict[str, Compressor] = {ZLIB.name: ZLIB, BZIP2.name: BZIP2}


def register(compressor: Compressor) -> None:
    """Make ``compressor`` available by its name (``compression="<name>"``)."""
    if not compressor.name.isidentifier():
        raise ValueError(f"a compression name must be an identifier, not {compressor.name!r}")
    _REGISTRY[compressor.name] = compressor


def get(name: str) -> Compressor:
    """Return the compressor called ``name`` or raise ``ValueError`` naming the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown compression {name!r} (known: {known})") from None


def names() -> list[str]:
    return sorted(_REGISTRY)
