"""Task name → :class:`~djtasks.task.Task`, for this process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exceptions import AlreadyRegistered, NotRegistered

if TYPE_CHECKING:
    from .task import Task


class TaskRegistry:
    """The tasks this process knows, by name. Workers look names up here only."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def register(self, task: Task) -> None:
        existing = self._tasks.get(task.name)
        if existing is not None and not _same_function(existing, task):
            raise AlreadyRegistered(
                f"task name {task.name!r} is already used by "
                f"{existing.run.__module__}.{existing.run.__qualname__}; "
                f"give {task.run.__module__}.{task.run.__qualname__} another name= "
            )
        self._tasks[task.name] = task

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise NotRegistered(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def unregister(self, name: str) -> None:
        self._tasks.pop(name, None)


def _same_function(a: Task, b: Task) -> bool:
    # A module imported twice (autoreload, ``python -m``) re-registers the
    # same function; that is not a clash.
    return (a.run.__module__, a.run.__qualname__) == (b.run.__module__, b.run.__qualname__)


#: The process-wide registry.
tasks = TaskRegistry()
