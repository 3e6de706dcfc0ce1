from __future__ import annotations

from django.db import models


class Effect(models.Model):
    """The side effect of one chaos task, written by the task itself.

    ``task_id`` is UNIQUE, so the database refuses a second effect of one
    task: a plain task that ran twice ends FAILURE with an IntegrityError.
    An ``acks_late`` task, which may legitimately run again after its worker
    was killed, upserts instead and counts its runs in ``runs``.
    """

    task_id = models.CharField(max_length=36, unique=True)
    runs = models.IntegerField(default=1)
    attempt = models.IntegerField()  # the claim the first effect was written under
    pid = models.IntegerField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.task_id} ({self.runs} run(s))"
