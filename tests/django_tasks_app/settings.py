"""Settings of worker (and shell) subprocesses started by the django.tasks tests."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

from .config import TASKS  # noqa: F401 - a setting

INSTALLED_APPS = [*INSTALLED_APPS, "tests.django_tasks_app"]
ROOT_URLCONF = "tests.django_tasks_app.urls"
