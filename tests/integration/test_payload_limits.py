"""DJTASKS_MAX_PAYLOAD_BYTES at ``.delay()``: nothing is written (unit tests: tests/unit)."""

from __future__ import annotations

from typing import Any

import pytest

from djtasks.serialization import PayloadTooLarge
from tests.testapp import tasks


@pytest.mark.django_db
def test_delay_refuses_a_payload_over_the_limit_and_writes_nothing(settings: Any) -> None:
    from djtasks.models import TaskRecord

    settings.DJTASKS_MAX_PAYLOAD_BYTES = 1000
    with pytest.raises(
        PayloadTooLarge,
        match=r"the arguments of task 'tests.testapp.tasks.echo' "
        r"are 2,009 bytes serialized with json, over the "
        r"limit of 1,000 bytes \(DJTASKS_MAX_PAYLOAD_BYTES\)",
    ):
        tasks.echo.delay("x" * 2000)
    assert not TaskRecord.objects.exists()
    tasks.echo.delay("x" * 900)
    assert TaskRecord.objects.count() == 1
