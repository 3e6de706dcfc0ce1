"""Worker settings for tests/acceptance/test_serialization_workers.py: the
safe serializers, no signing (so pickle is refused), msgpack results."""

from tests.settings import *  # noqa: F403

DJTASKS_ACCEPT_CONTENT = ["json", "msgpack", "yaml"]
DJTASKS_SIGN_MESSAGES = False
DJTASKS_RESULT_SERIALIZER = "msgpack"
DJTASKS_IMPORTS = ["tests.acceptance.serialization_tasks"]
