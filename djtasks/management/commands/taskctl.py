"""``manage.py taskctl``: inspect and control running workers (see :mod:`djtasks.control`)."""

from __future__ import annotations

import argparse
import getpass
import json
import socket
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from djtasks import control, events

USAGE = """\
  inspect  active|reserved|scheduled|revoked|registered|stats|ping
  control  shutdown | pool_grow N | pool_shrink N | add_consumer Q | cancel_consumer Q
           | rate_limit TASK RATE | time_limit TASK SOFT HARD
  revoke   ID [ID ...] [--terminate]
  status | purge [-Q QUEUES] [--force] | pause Q | resume Q
  events   [--name GLOB] [-Q QUEUE] [--state STATE] [--since SECONDS]"""


def _count(value: str) -> int:
    try:
        return control._count(value)
    except control.RemoteControlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 3600:
        raise argparse.ArgumentTypeError(f"--timeout takes seconds > 0, not {value!r}")
    return seconds


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


def _options(
    wait: bool = False, dest: bool = False, json: bool = False, keep: bool = False
) -> argparse.ArgumentParser:
    """A parent parser with the shared options asked for; with ``keep`` an
    absent option leaves the value already parsed alone."""
    parser = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if keep else value

    if json:
        parser.add_argument(
            "--json", action="store_true", default=default(False), help="print the result as JSON"
        )
    if wait:
        parser.add_argument(
            "--timeout",
            type=_timeout,
            default=default(control.DEFAULT_TIMEOUT),
            help="seconds to wait for replies (default 1)",
        )
    if dest:
        parser.add_argument(
            "-d",
            "--destination",
            type=_names,
            default=default(None),
            metavar="NAME[,NAME]",
            help="only these workers (default: all)",
        )
    return parser


class Command(BaseCommand):
    help = (
        "Inspect and control running workers through the database: "
        "commands are rows, workers answer with rows.\n" + USAGE
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        json_opt, wait, dest = _options(json=True), _options(wait=True), _options(dest=True)
        # The same options after a control command (`control pool_grow 2 -d w1`);
        # absent there, they leave the values given before it alone.
        after = _options(wait=True, dest=True, json=True, keep=True)
        sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

        inspect = sub.add_parser(
            "inspect", parents=[json_opt, wait, dest], help="ask workers what they are doing"
        )
        inspect.add_argument("method", choices=control.INSPECT_COMMANDS)

        ctl = sub.add_parser(
            "control", parents=[json_opt, wait, dest], help="change running workers"
        )
        cmds = ctl.add_subparsers(dest="command", metavar="COMMAND", required=True)
        cmds.add_parser(
            "shutdown", parents=[after], help="warm shutdown: finish running tasks, then exit"
        )
        cmds.add_parser(
            "pool_grow", parents=[after], help="add N pool processes/threads"
        ).add_argument("n", type=_count, metavar="N")
        cmds.add_parser(
            "pool_shrink", parents=[after], help="remove N pool processes/threads"
        ).add_argument("n", type=_count, metavar="N")
        cmds.add_parser(
            "add_consumer", parents=[after], help="also claim from queue Q"
        ).add_argument("queue", metavar="Q")
        cmds.add_parser(
            "cancel_consumer", parents=[after], help="stop claiming from queue Q"
        ).add_argument("queue", metavar="Q")
        rate = cmds.add_parser(
            "rate_limit",
            parents=[after],
            help="cluster-wide rate limit of a task (10/s, 100/m, 1000/h; 0 resets)",
        )
        rate.add_argument("task_name", metavar="TASK")
        rate.add_argument("rate", metavar="RATE")
        limit = cmds.add_parser(
            "time_limit",
            parents=[after],
            help="soft and hard time limits of a task, in seconds (0 removes)",
        )
        limit.add_argument("task_name", metavar="TASK")
        limit.add_argument("soft", metavar="SOFT")
        limit.add_argument("hard", metavar="HARD")

        revoke = sub.add_parser(
            "revoke", parents=[json_opt, wait], help="revoke tasks that have not started"
        )
        revoke.add_argument("task_ids", nargs="+", metavar="ID")
        revoke.add_argument(
            "--terminate",
            action="store_true",
            help="also kill tasks already running (prefork pool)",
        )

        sub.add_parser("status", parents=[json_opt], help="workers online and offline")
        events.add_parser(sub, json_opt)  # djtasks.events: the live stream

        purge = sub.add_parser("purge", parents=[json_opt], help="delete every task waiting to run")
        purge.add_argument(
            "-Q",
            "--queues",
            type=_names,
            default=None,
            help="only these queues (comma-separated; default: all)",
        )
        purge.add_argument(
            "--force",
            "--noinput",
            "--no-input",
            dest="interactive",
            action="store_false",
            help="do not ask for confirmation",
        )

        for name, what in (
            ("pause", "stop every worker claiming from queue Q"),
            ("resume", "let workers claim from queue Q again"),
        ):
            sub.add_parser(name, parents=[json_opt, wait], help=what).add_argument(
                "queue", metavar="Q"
            )

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        try:
            getattr(self, f"_{options['action']}")(options)
        except control.RemoteControlError as exc:
            raise CommandError(str(exc)) from None

    # -- actions ---------------------------------------------------------------

    def _inspect(self, options: dict[str, Any]) -> None:
        replies = control.inspect(options["method"], options["destination"], options["timeout"])
        self._show(replies, options["timeout"])

    def _control(self, options: dict[str, Any]) -> None:
        command, dest, timeout = options["command"], options["destination"], options["timeout"]
        note = ""
        if command in ("pool_grow", "pool_shrink"):
            replies = getattr(control, command)(options["n"], dest, timeout)
        elif command in ("add_consumer", "cancel_consumer"):
            replies = getattr(control, command)(options["queue"], dest, timeout)
        elif command == "rate_limit":
            change = control.rate_limit(options["task_name"], options["rate"], dest, timeout)
            replies, note = change.replies, change.note
        elif command == "time_limit":
            change = control.time_limit(
                options["task_name"], options["soft"], options["hard"], dest, timeout
            )
            replies, note = change.replies, change.note
        else:
            replies = control.shutdown(dest, timeout)
        # Limits are stored for every worker, present and future: no reply is
        # no failure there.
        stored = command in ("rate_limit", "time_limit")
        if stored and not self.as_json:
            self.stdout.write(
                f"Stored the new {command.replace('_', ' ')} of {options['task_name']}."
            )
        if note:
            self.stderr.write(f"Note: {note}")
        self._show(replies, timeout, stored=stored)

    def _revoke(self, options: dict[str, Any]) -> None:
        report = control.revoke(options["task_ids"], options["terminate"], options["timeout"])
        if self.as_json:
            self._json(
                {
                    "revoked": report.revoked,
                    "terminated": report.terminated,
                    "terminating": report.terminating,
                    "failed": report.failed,
                }
            )
        else:
            for task_id in report.revoked:
                self.stdout.write(f"{task_id}: revoked (it had not started)")
            for task_id, worker in report.terminated.items():
                self.stdout.write(f"{task_id}: terminated on {worker}")
            for task_id, worker in report.terminating.items():
                self.stdout.write(
                    f"{task_id}: waiting in a busy child of {worker}; "
                    "terminated as soon as it starts"
                )
            for task_id, why in report.failed.items():
                self.stderr.write(f"{task_id}: not revoked: {why}")
        if report.failed:
            raise CommandError(
                f"{len(report.failed)} of "
                f"{len(report.failed) + len(report.revoked) + len(report.terminated) + len(report.terminating)} "
                "task(s) could not be revoked"
            )

    def _events(self, options: dict[str, Any]) -> None:
        events.run_command(self, options)

    def _status(self, options: dict[str, Any]) -> None:
        workers = control.status()
        online = [w for w in workers if w.state == control.ONLINE]
        if self.as_json:
            self._json(
                {
                    "workers": [w.as_json() for w in workers],
                    "paused_queues": [p.name for p in control.paused()],
                }
            )
        else:
            now = timezone.now()
            rows = [("NAME", "STATE", "PID", "POOL", "QUEUES", "PROCESSED", "LAST SEEN")]
            rows += [
                (
                    w.name,
                    w.state,
                    str(w.pid),
                    f"{w.pool} x{w.concurrency}",
                    ",".join(w.queues),
                    str(w.processed),
                    _ago(now, w.last_seen),
                )
                for w in workers
            ]
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for r in rows:
                self.stdout.write(
                    "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                )
            for p in control.paused():
                self.stdout.write(
                    f"Queue {p.name} is paused (since "
                    f"{p.paused_at:%Y-%m-%d %H:%M:%S}"
                    f"{' by ' + p.paused_by if p.paused_by else ''})."
                )
            self.stdout.write(
                f"\n{len(online)} online, "
                f"{sum(w.state == control.OFFLINE for w in workers)} offline, "
                f"{sum(w.state == control.STOPPED for w in workers)} stopped."
            )
        if not online:
            raise CommandError("no workers online")

    def _purge(self, options: dict[str, Any]) -> None:
        queues = options["queues"]
        where = f"queue(s) {', '.join(queues)}" if queues else "all queues"
        found = control.waiting(queues)
        if not found.total:
            if self.as_json:
                self._json({"purged": 0})
            else:
                self.stdout.write(f"No tasks waiting in {where if queues else 'any queue'}.")
            return
        if options["interactive"]:
            later = f" ({found.scheduled} of them scheduled for later)" if found.scheduled else ""
            try:
                answer = input(
                    f"Delete {found.total} waiting task(s){later} from {where}? "
                    "This cannot be undone. [y/N] "
                )
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("purge cancelled; nothing was deleted")
        purged = control.purge(queues)
        if self.as_json:
            self._json({"purged": purged})
        else:
            self.stdout.write(f"Purged {purged} task(s) from {where}.")

    def _pause(self, options: dict[str, Any]) -> None:
        by = f"{getpass.getuser()}@{socket.gethostname()}"
        changed, replies = control.pause(options["queue"], by, options["timeout"])
        if not self.as_json:
            self.stdout.write(
                f"Queue {options['queue']} {'paused' if changed else 'was already paused'}."
            )
        self._show(replies, options["timeout"], stored=True)

    def _resume(self, options: dict[str, Any]) -> None:
        changed, replies = control.resume(options["queue"], options["timeout"])
        if not self.as_json:
            self.stdout.write(
                f"Queue {options['queue']} {'resumed' if changed else 'was not paused'}."
            )
        self._show(replies, options["timeout"], stored=True)

    # -- output ----------------------------------------------------------------

    def _show(self, replies: control.Replies, timeout: float, stored: bool = False) -> None:
        """Print the replies; fail if none came (unless the change was stored in
        the database, which workers read anyway) or if a worker refused."""
        if self.as_json:
            self._json({w: r.as_json() for w, r in replies.replies.items()})
        else:
            for worker, reply in replies.replies.items():
                lines = (
                    _describe(replies.command, reply.value)
                    if reply.ok
                    else [f"ERROR: {reply.error}"]
                )
                head, *rest = lines or [""]
                self.stdout.write(f"-> {worker}: {head}")
                for line in rest:
                    self.stdout.write(f"   {line}")
            if replies.replies:
                n = len(replies.replies)
                self.stdout.write(f"\n{n} worker{'s' if n != 1 else ''} replied.")
        for worker in replies.missing:
            self.stderr.write(f"{worker} did not reply within {timeout:g} s.")
        if not replies.replies:
            message = (
                f"no workers replied within {timeout:g} s (see `taskctl status`; "
                "a longer --timeout may help)"
            )
            if not stored:
                raise CommandError(message)
            self.stderr.write(f"{message}; workers that start later read the stored change.")
        if replies.errors:
            raise CommandError(f"{len(replies.errors)} worker(s) could not do it")

    def _json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str))


def _describe(command: str, value: Any) -> list[str]:
    """Human lines for one reply."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if not value:
            return ["none"]
        lines = [
            f"{len(value)} {'task' if command != 'registered' else 'task name'}"
            f"{'s' if len(value) != 1 else ''}"
        ]
        for item in value:
            lines.append(f"* {_item(item)}")
        return lines
    if isinstance(value, dict):
        return ["", *json.dumps(value, indent=2, sort_keys=True, default=str).splitlines()]
    return [json.dumps(value, default=str)]


def _item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    text = f"{item.get('name', '?')}[{item.get('id', '?')}]"
    extra = {k: v for k, v in item.items() if k not in ("name", "id") and v not in (None, "")}
    return text + "".join(f" {k}={v}" for k, v in extra.items())


def _ago(now: Any, then: Any) -> str:
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{then:%Y-%m-%d %H:%M:%S}"
