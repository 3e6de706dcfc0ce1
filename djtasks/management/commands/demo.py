"""``manage.py demo``: the example site, a worker and beat, in one terminal.

Migrates, makes sure there is an admin login, then runs ``runserver``,
``taskworker`` and (when installed) ``taskbeat`` as child processes until
Ctrl-C or SIGTERM, and stops them all.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

ADMIN_USERNAME = "admin"
#: Seconds each child gets to finish after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


class Command(BaseCommand):
    help = (
        "Run the demo: migrate, create an admin login, then start the web server, a "
        "taskworker and taskbeat together until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1", help="web server address")
        parser.add_argument("--port", type=int, default=8000, help="web server port")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        self._ensure_admin()
        connections.close_all()  # the children open their own

        self._signals: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: self._signals.append(signum))

        children = self._start_children(options["addr"], options["port"])
        base = f"http://{options['addr']}:{options['port']}"
        self.stdout.write(
            self.style.SUCCESS(f"\nExample page: {base}/\nAdmin:        {base}/admin/\n")
            + "Press Ctrl-C to stop everything.\n"
        )
        dead = self._wait(children)
        self._stop(children)
        if dead is not None:
            raise CommandError(
                f"{dead.name} exited unexpectedly (code {dead.process.returncode}); "
                "stopped the others."
            )
        self.stdout.write("Stopped.")

    def _ensure_admin(self) -> None:
        user_model = get_user_model()
        users = user_model._default_manager
        if users.filter(**{user_model.USERNAME_FIELD: ADMIN_USERNAME}).exists():
            self.stdout.write(
                f"Admin login: user {ADMIN_USERNAME!r} already exists. Forgot the password? "
                f"python manage.py changepassword {ADMIN_USERNAME}"
            )
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(
            **{user_model.USERNAME_FIELD: ADMIN_USERNAME}, email="", password=password
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Admin login created: user {ADMIN_USERNAME!r}, password {password!r} "
                "(shown only this once)"
            )
        )

    def _start_children(self, addr: str, port: int) -> list[Child]:
        commands = {
            "web server": ["runserver", f"{addr}:{port}", "--noreload"],
            "taskworker": ["taskworker", "--concurrency", "2"],
        }
        if "taskbeat" in get_commands():
            commands["taskbeat"] = ["taskbeat"]
        else:
            self.stdout.write("taskbeat is not installed: running without periodic tasks.")
        # Each child leads its own process group: a Ctrl-C in the terminal
        # reaches only this command, which then stops every child exactly once
        # (a worker that got both SIGINT and SIGTERM would take it as a cold
        # shutdown).
        return [
            Child(name, subprocess.Popen([*_manage_py(), *argv], process_group=0))  # noqa: S603
            for name, argv in commands.items()
        ]

    def _wait(self, children: list[Child]) -> Child | None:
        """Wait for a stop signal (returns None) or a child's death (returns it)."""
        while not self._signals:
            for child in children:
                if child.process.poll() is not None:
                    return child
            time.sleep(0.2)
        return None

    def _stop(self, children: list[Child]) -> None:
        """SIGTERM each child, give them STOP_TIMEOUT, then kill what is left.

        A second Ctrl-C skips the wait.
        """
        self.stdout.write("Stopping " + ", ".join(c.name for c in children) + " ...")
        received = len(self._signals)
        for child in children:
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        while (
            any(c.process.poll() is None for c in children)
            and time.monotonic() < deadline
            and len(self._signals) <= received
        ):
            time.sleep(0.1)
        for child in children:
            if child.process.poll() is None:
                self.stderr.write(f"{child.name} did not stop in time: killing it.")
            # Kill the whole group: the child if it is still there, and any
            # process it left behind (a pool process of a killed worker).
            try:
                os.killpg(child.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.process.wait()


def _manage_py() -> list[str]:
    """How this command was started, to start its siblings the same way."""
    script = os.path.abspath(sys.argv[0])
    if script.endswith(".py"):
        return [sys.executable, script]
    return [sys.executable, "-m", "django"]  # e.g. through django-admin
