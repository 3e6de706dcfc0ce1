"""djtasks: your Django database as the task queue.

The public API. Everything else in the package is internal. Nothing here
touches the models at import time, so ``from djtasks import task`` is safe
in any module, before Django's app registry is ready.
"""

from __future__ import annotations

from . import exceptions, states
from .canvas import Signature, chain, chord, chunks, group, signature, xmap, xstarmap
from .result import AsyncResult, EagerResult, GroupResult
from .task import Task, shared_task, task

__version__ = "0.1.0"

__all__ = [
    "AsyncResult",
    "EagerResult",
    "GroupResult",
    "Signature",
    "Task",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "exceptions",
    "group",
    "shared_task",
    "signature",
    "states",
    "task",
    "xmap",
    "xstarmap",
]
