"""The reference pages list everything the code has: settings, commands, signals, checks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import djtasks
from djtasks import signals
from djtasks.conf import DEFAULTS
from tests.docs import command_parsers, markdown
from tests.docs.markdown import DOCS, ROOT

COMMANDS = sorted(
    p.stem
    for p in (ROOT / "djtasks" / "management" / "commands").glob("*.py")
    if not p.stem.startswith("_")
)


def test_every_setting_is_documented() -> None:
    page = markdown.read("settings.md")
    text = page.path.read_text()
    for name in DEFAULTS:
        setting = f"DJTASKS_{name}"
        assert f"setting-{setting}" in page.targets, f"settings.md has no section for {setting}"
        assert f"[`{setting}`](#setting-{setting})" in text, (
            f"settings.md's table has no row for {setting}"
        )
    documented = set(re.findall(r"\(setting-DJTASKS_(\w+)\)=", text))
    assert documented <= set(DEFAULTS), (
        f"settings that no longer exist: {documented - set(DEFAULTS)}"
    )


def test_every_check_id_is_documented() -> None:
    text = (DOCS / "settings.md").read_text()
    ids = set()
    for path in (ROOT / "djtasks").rglob("*.py"):
        source = path.read_text()
        ids |= set(re.findall(r'id="(djtasks\.[EW]\d{3})"', source))
        for node in ast.walk(ast.parse(source)):
            # checks.py: _error("NAME", "message", 5) is the check djtasks.E005.
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "_error"
                and node.args
                and isinstance(node.args[-1], ast.Constant)
                and isinstance(node.args[-1].value, int)
            ):
                ids.add(f"djtasks.E{node.args[-1].value:03d}")
    ids = {i for i in ids if not i.startswith("djtasks.backends")}
    missing = sorted(i for i in ids if f"`{i}`" not in text)
    assert not missing, f"check ids not in settings.md: {missing}"


def test_every_command_is_in_the_command_reference() -> None:
    page = markdown.read("commands.md")
    rendered = [d.argument for d in page.directives if d.name == "djtasks-command"]
    assert rendered == COMMANDS or sorted(rendered) == COMMANDS, rendered
    for name in COMMANDS:
        text = command_parsers.markdown(name)
        parser = command_parsers.parser_for(name)
        stack = [parser]
        while stack:
            current = stack.pop()
            for action in command_parsers.options(current):
                for flag in action.option_strings:
                    assert f"`{flag}" in text, f"{name}: {flag} is not in the reference"
            stack += [sub for _, _, sub in command_parsers.subcommands(current)]


def test_the_worker_page_lists_every_taskworker_option() -> None:
    text = (DOCS / "worker.md").read_text()
    table = text[text.index("## Options") : text.index("## Pools")]
    for action in command_parsers.options(command_parsers.parser_for("taskworker")):
        assert any(f"`{flag}`" in table for flag in action.option_strings), (
            f"worker.md's option table lacks {action.option_strings}"
        )


def test_every_signal_is_documented() -> None:
    text = (DOCS / "signals.md").read_text()
    for name in signals.__all__:
        assert f".. py:data:: {name}" in text, f"signals.md does not document {name}"


def test_every_public_name_is_in_the_api_reference() -> None:
    text = (DOCS / "reference.md").read_text()
    for name in djtasks.__all__:
        if name.startswith("__"):
            continue
        assert re.search(rf"\b{name}\b", text), f"reference.md does not mention {name}"


def test_the_changelog_has_this_version() -> None:
    assert f"## {djtasks.__version__}" in (DOCS / "changelog.md").read_text()


def test_the_command_reference_shows_the_parsers_defaults(tmp_path: Path) -> None:
    text = command_parsers.markdown("taskworker")
    assert "| `-P POOL`, `--pool POOL` | `'prefork'` |" in text
    assert "| `--burst` | off |" in text
