"""Worker settings for tests/acceptance/test_serialization_workers.py: the
installed safe serializers, no signing (so pickle is refused), msgpack
results when msgpack is installed."""

from importlib.util import find_spec

from tests.settings import *  # noqa: F403

DJTASKS_ACCEPT_CONTENT = ["json", *(name for name in ("msgpack", "yaml") if find_spec(name))]
DJTASKS_SIGN_MESSAGES = False
DJTASKS_RESULT_SERIALIZER = "msgpack" if find_spec("msgpack") else "json"
DJTASKS_IMPORTS = ["tests.acceptance.serialization_tasks"]
