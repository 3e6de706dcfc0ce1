"""djtasks: your Django database as the task queue.

The public API. Everything else in the package is internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import exceptions, states

__version__ = "0.1.0"

__all__ = [
    "AsyncResult",
    "EagerResult",
    "Task",
    "__version__",
    "exceptions",
    "shared_task",
    "states",
    "task",
]

if TYPE_CHECKING:
    from .result import AsyncResult, EagerResult
    from .task import Task, shared_task, task

_LAZY = {
    "AsyncResult": "result",
    "EagerResult": "result",
    "Task": "task",
    "task": "task",
    "shared_task": "task",
}


def __getattr__(name: str) -> Any:
    # Loaded on first use, so "import djtasks" in settings.py or a tasks.py
    # never touches the models before Django's app registry is ready.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'djtasks' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"djtasks.{module}"), name)
    globals()[name] = value
    return value
