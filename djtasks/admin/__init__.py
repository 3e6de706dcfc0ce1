"""The Django admin for djtasks: tasks, workers and periodic schedules."""

from . import schedule_admin, task_admin, worker_admin  # noqa: F401 - each registers its ModelAdmins
