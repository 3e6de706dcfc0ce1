"""The options of djtasks' management commands, as Markdown, from their argparse parsers.

Used by the ``djtasks-command`` directive (``djtasks_docs.py``) when the docs
are built, and by ``tests/docs`` (which has no Sphinx), so that
``docs/commands.md`` can never disagree with the commands: nothing there is
written by hand but the prose around the tables. Django must be set up.
"""

from __future__ import annotations

import argparse
from typing import Any

#: Options every Django command has; the page lists them once.
DJANGO_COMMON = frozenset(
    {
        "help",
        "version",
        "verbosity",
        "settings",
        "pythonpath",
        "traceback",
        "no_color",
        "force_color",
        "skip_checks",
    }
)


def parser_for(name: str) -> argparse.ArgumentParser:
    """The argument parser of ``manage.py <name>`` (a djtasks command)."""
    from django.core.management import load_command_class

    command = load_command_class("djtasks", name)
    return command.create_parser("manage.py", name)


def help_text(name: str) -> str:
    """The command's ``help``: its first line only (the rest is usage for ``--help``)."""
    from django.core.management import load_command_class

    return str(load_command_class("djtasks", name).help).split("\n")[0].strip()


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`"


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return _code(action.metavar or action.dest.upper())
    if action.nargs == 0:
        return ", ".join(_code(s) for s in action.option_strings)
    metavar = action.metavar or action.dest.upper()
    return ", ".join(_code(f"{s} {metavar}") for s in action.option_strings)


def _default(action: argparse.Action) -> str:
    if not action.option_strings:
        return "(required)" if action.nargs not in ("?", "*") else ""
    if action.nargs == 0:
        return "off"
    default = action.default
    if default is None or default is argparse.SUPPRESS:
        return ""
    return _code(repr(default) if isinstance(default, str) else str(default))


def _meaning(action: argparse.Action) -> str:
    text = (action.help or "").replace("%%", "%")
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        listed = ", ".join(_code(str(c)) for c in action.choices)
        text = f"{text}; one of {listed}" if text else f"one of {listed}"
    if action.nargs in ("+", "*"):
        text = f"{text} (one or more)" if action.nargs == "+" else f"{text} (any number)"
    return _cell(text)


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's own options and arguments, without Django's common ones."""
    return [
        a
        for a in parser._actions
        if a.dest not in DJANGO_COMMON
        and not isinstance(a, argparse._SubParsersAction)
        and a.help is not argparse.SUPPRESS
    ]


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, parser)`` of each sub-command, in the order they were added."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def table(parser: argparse.ArgumentParser) -> list[str]:
    rows = options(parser)
    if not rows:
        return []
    lines = ["| option | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| {_flags(a)} | {_default(a)} | {_meaning(a)} |" for a in rows]
    return lines


def usage(prefix: str, parser: argparse.ArgumentParser) -> str:
    parts = [prefix]
    for action in options(parser):
        if not action.option_strings:
            parts.append(
                action.metavar
                or action.dest.upper() + (" ..." if action.nargs in ("+", "*") else "")
            )
            continue
        flag = action.option_strings[0]
        if action.nargs != 0:
            flag += f" {action.metavar or action.dest.upper()}"
        parts.append(f"[{flag}]")
    if subcommands(parser):
        parts.append("COMMAND ...")
    return " ".join(parts)


def markdown(name: str, heading: str = "###") -> str:
    """The reference of ``manage.py <name>``: usage and option table, then
    one section per sub-command (recursively), as Markdown."""
    parser = parser_for(name)
    lines = [f"```text\n{usage(f'manage.py {name}', parser)}\n```", ""]
    lines += table(parser)
    lines += _sub_sections(f"manage.py {name}", parser, heading)
    return "\n".join(lines).strip() + "\n"


def _sub_sections(prefix: str, parser: argparse.ArgumentParser, heading: str) -> list[str]:
    lines: list[str] = []
    for sub_name, sub_help, sub in subcommands(parser):
        full = f"{prefix} {sub_name}"
        lines += ["", f"{heading} `{full.removeprefix('manage.py ')}`", ""]
        if sub_help:
            lines += [
                sub_help[0].upper() + sub_help[1:] + ("" if sub_help.endswith(".") else "."),
                "",
            ]
        lines += [f"```text\n{usage(full, sub)}\n```", ""]
        lines += table(sub)
        lines += _sub_sections(full, sub, heading + "#" if len(heading) < 6 else heading)
    return lines
