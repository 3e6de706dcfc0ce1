"""Settings for benchmark runs: the example project plus the benchmark app.

Every process of a run (the harness's drivers, ``manage.py taskworker``, its
children) loads these settings. The harness passes the database in the
environment, never through ``DATABASE_URL``, so a benchmark can only open a
database it created:

``DJTASKS_BENCH_DATABASE``
    ``postgres:<name>`` (on ``DJTASKS_BENCH_PG_URL``, default
    ``postgres://postgres@127.0.0.1:5432``) or ``sqlite:<path>``.
``DJTASKS_BENCH_SETTINGS``
    a JSON object of extra settings (``--set NAME=VALUE`` on the command
    line), for example ``{"DJTASKS_PREFETCH_MULTIPLIER": 8}``.
"""

import json
import os
from urllib.parse import urlsplit

from example_project.settings import *  # noqa: F403
from example_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks"]
DJTASKS_IMPORTS = ["benchmarks.tasks"]
DEBUG = False
# The worker's -l decides its level; nothing else of djtasks logs per task.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"djtasks": {"level": "WARNING"}},
}
# W4 keeps a million finished rows across runs: no expiry may prune them.
DJTASKS_RESULT_EXPIRES = None


def _database(spec: str) -> dict:
    vendor, _, name = spec.partition(":")
    if vendor == "sqlite":
        # The dev setup of example_project: WAL, synchronous=NORMAL,
        # IMMEDIATE transactions, a writer waits up to 20 s for the lock.
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if vendor == "postgres":
        url = urlsplit(os.environ.get("DJTASKS_BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432"))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": url.username or "postgres",
            "PASSWORD": url.password or "",
            "HOST": url.hostname or "127.0.0.1",
            "PORT": str(url.port or 5432),
            # Django's default: a connection per request, as views run.
            "CONN_MAX_AGE": 0,
        }
    raise RuntimeError(f"DJTASKS_BENCH_DATABASE must be postgres:NAME or sqlite:PATH, not {spec!r}")


# Without the variable (manage.py check, makemigrations) an in-memory SQLite.
DATABASES = {"default": _database(os.environ.get("DJTASKS_BENCH_DATABASE", "sqlite::memory:"))}
globals().update(json.loads(os.environ.get("DJTASKS_BENCH_SETTINGS", "{}")))
