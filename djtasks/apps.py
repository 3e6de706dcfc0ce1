from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjtasksConfig(AppConfig):
    name = "djtasks"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401 - registers the system checks
            http,  # noqa: F401 - registers the built-in task djtasks.http.dispatch
        )
        from .canvas import register_builtin_tasks
        from .conf import settings

        register_builtin_tasks()
        # Like admin.py: every installed app's tasks.py registers its tasks.
        autodiscover_modules("tasks")
        for module in settings.IMPORTS or ():
            import_module(module)
