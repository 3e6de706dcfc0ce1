"""Compression options on the rows written by delay() and bulk_delay()."""

from __future__ import annotations

from typing import Any

import pytest

from djtasks import serialization
from djtasks.models import TaskRecord

pytestmark = pytest.mark.django_db


def test_bulk_delay_compresses_every_row_like_delay(temp_task: Any) -> None:
    t = temp_task(lambda data: None, compression="bzip2")
    t.delay("x" * 100)
    t.bulk_delay([("a" * 100,), ("b" * 100,), ("c" * 100,)])
    t.bulk_delay([("d" * 100,), ("e" * 100,)], compression="zlib")
    rows = {
        serialization.decode_arguments(ct, text)[0][0][0]: ct
        for ct, text in TaskRecord.objects.values_list("content_type", "payload")
    }
    assert rows == {
        **dict.fromkeys("xabc", "application/json; compression=bzip2"),
        **dict.fromkeys("de", "application/json; compression=zlib"),
    }
