"""Signals sent by djtasks (Django signals; connect with ``@receiver``).

Every task signal is sent with ``sender`` = the :class:`~djtasks.task.Task`.

- ``task_received(sender, request)``: a worker claimed the task (worker parent).
- ``task_prerun(sender, task_id, task, args, kwargs)``: about to run (in the process running it).
- ``task_postrun(sender, task_id, task, args, kwargs, retval, state)``: ran, whatever the outcome.
- ``task_success(sender, result)``
- ``task_failure(sender, task_id, exception, args, kwargs, traceback, einfo)``
- ``task_retry(sender, request, reason, einfo)``
- ``task_revoked(sender, request, terminated, signum, expired)``
- ``worker_ready(sender)`` / ``worker_shutdown(sender)``: ``sender`` is the worker.
- ``beat_init(sender)``: ``sender`` is the beat service.
"""

from __future__ import annotations

from django.dispatch import Signal

task_received = Signal()
task_prerun = Signal()
task_postrun = Signal()
task_success = Signal()
task_failure = Signal()
task_retry = Signal()
task_revoked = Signal()
worker_ready = Signal()
worker_shutdown = Signal()
beat_init = Signal()

__all__ = [
    "beat_init",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_retry",
    "task_revoked",
    "task_success",
    "worker_ready",
    "worker_shutdown",
]
