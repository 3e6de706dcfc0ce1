"""A Django-6-only test app: django.tasks tasks run by djtasks.backends.DatabaseBackend.

In-process tests use :mod:`.config` through ``override_settings``; worker
subprocesses load :mod:`.settings`, which installs this app (so the worker
autodiscovers :mod:`.tasks`) and configures ``TASKS``.
"""
