"""Worker settings for tests/acceptance/test_serialization_workers.py: every
serializer accepted, messages signed, results pickled (and signed)."""

from tests.settings import *  # noqa: F403

DJTASKS_ACCEPT_CONTENT = ["json", "msgpack", "yaml", "pickle"]
DJTASKS_SIGN_MESSAGES = True
DJTASKS_RESULT_SERIALIZER = "pickle"
DJTASKS_IMPORTS = ["tests.acceptance.serialization_tasks"]
