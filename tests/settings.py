"""Settings of the test suite: the example project plus a test app.

Worker subprocesses started by the tests (``tests/conftest.py``) load these
settings too, with ``DJTASKS_TEST_USE_TEST_DB=1`` and
``DJTASKS_TEST_DB_NAME=<name>`` so they open the *test* database that
pytest-django created rather than the development one.

Test database names carry this process's pid, so several runs at once (two
engineers, ``tox -p``) never drop each other's database. On SQLite the test
database is a file (not ``:memory:``) so that subprocesses can open it.
"""

import os
import tempfile

from example_project.settings import *  # noqa: F403
from example_project.settings import DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Idle workers poll this often (SQLite has no LISTEN/NOTIFY): keeps tests quick.
DJTASKS_POLL_INTERVAL = 0.1
# Lets a test give a worker subprocess short leases (crash-recovery tests).
DJTASKS_VISIBILITY_TIMEOUT = float(os.environ.get("DJTASKS_TEST_VISIBILITY_TIMEOUT", "60"))

_default = DATABASES["default"]
if os.environ.get("DJTASKS_TEST_USE_TEST_DB") == "1":
    # A subprocess of the test suite: use the test database it names.
    _default["NAME"] = os.environ["DJTASKS_TEST_DB_NAME"]
elif _default["ENGINE"].endswith("sqlite3"):
    _default.setdefault("TEST", {})["NAME"] = os.path.join(
        tempfile.gettempdir(), f"djtasks-test-{os.getpid()}.sqlite3"
    )
else:
    _default.setdefault("TEST", {})["NAME"] = f"test_{_default['NAME']}_{os.getpid()}"

# The chaos suite (tests/chaos): its side table and tasks, in every worker.
INSTALLED_APPS += ["tests.chaos.app"]
# Beat subprocesses of the chaos suite choose their election and lease length.
DJTASKS_BEAT_ELECTION = os.environ.get("DJTASKS_TEST_BEAT_ELECTION", "auto")
DJTASKS_BEAT_LEASE = float(os.environ.get("DJTASKS_TEST_BEAT_LEASE", "5"))
