"""``docs/_ext/command_reference.py`` for the tests: the docs build renders the
command reference with it, and the tests check names against the same parsers."""

from __future__ import annotations

import importlib.util
import sys

from tests.docs.markdown import DOCS

_spec = importlib.util.spec_from_file_location(
    "command_reference", DOCS / "_ext" / "command_reference.py"
)
assert _spec is not None and _spec.loader is not None
command_reference = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("command_reference", command_reference)
_spec.loader.exec_module(command_reference)

parser_for = command_reference.parser_for
markdown = command_reference.markdown
options = command_reference.options
subcommands = command_reference.subcommands
