"""Worker settings for tests/acceptance/test_serialization_workers.py: every
installed serializer accepted, messages signed, results pickled (and signed)."""

from importlib.util import find_spec

from tests.settings import *  # noqa: F403

DJTASKS_ACCEPT_CONTENT = [
    "json",
    *(name for name in ("msgpack", "yaml") if find_spec(name)),
    "pickle",
]
DJTASKS_SIGN_MESSAGES = True
DJTASKS_RESULT_SERIALIZER = "pickle"
DJTASKS_IMPORTS = ["tests.acceptance.serialization_tasks"]
