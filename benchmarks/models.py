"""The benchmark's own table: one row per run of a verifying task."""

from __future__ import annotations

from django.db import models


class Execution(models.Model):
    """A run of ``bench.realistic``, written by the task itself.

    ``task_id`` is UNIQUE: a second run of the same task fails on the
    constraint (and so ends FAILURE), so "exactly once" is checked by the
    database, not by counting afterwards.
    """

    task_id = models.UUIDField(unique=True)
    pid = models.IntegerField()

    def __str__(self) -> str:
        return f"{self.task_id} in {self.pid}"
