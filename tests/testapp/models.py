from django.db import models


class Execution(models.Model):
    """One run of a test task, written by the task itself.

    A task id that appears twice ran twice: the suite's proof of "exactly
    once". ``pid`` tells which process ran it (a prefork child, the worker
    itself for threads/solo) and lets a test kill that process.
    """

    task_id = models.CharField(max_length=36, db_index=True)
    name = models.CharField(max_length=255)
    pid = models.IntegerField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]

    def __str__(self) -> str:
        return f"{self.name}[{self.task_id}] in {self.pid}"
