"""The TASKS setting of the django.tasks tests (in-process and in worker subprocesses)."""

TASKS = {
    "default": {
        "BACKEND": "djtasks.backends.DatabaseBackend",
        "QUEUES": ["default", "queue_1", "retrying", "limited"],
        "OPTIONS": {
            "queues": {
                "retrying": {"max_attempts": 3, "backoff": 0.05, "backoff_max": 0.2},
                "limited": {"time_limit": 1.0, "soft_time_limit": 0.3},
            },
        },
    },
    "other": {"BACKEND": "djtasks.backends.DatabaseBackend", "QUEUES": []},
    "immediate": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend", "QUEUES": []},
}

#: In-process tests allow the workers to load these modules (the subprocess
#: settings install the app instead).
IMPORTS = ["tests.django_tasks_app.tasks", "tests.django_tasks_app.lazy_tasks"]
