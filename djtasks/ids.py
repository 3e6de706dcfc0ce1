"""Time-ordered task ids (UUID version 7), so new rows append to the index."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """Return a UUIDv7: 48 bits of Unix milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand & ~(0xF << 76) & ~(0x3 << 62)
    value |= 0x7 << 76  # version 7
    value |= 0x2 << 62  # RFC 4122 variant
    return uuid.UUID(int=value)
