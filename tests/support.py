"""Helpers for tests that wait on, or run, things outside the test's own thread.

- :func:`wait_until` polls a condition with a deadline.
- :func:`in_other_connection` runs ORM code on a second database connection.
- :class:`ManagedProcess` is a ``manage.py`` subprocess pointed at the test
  database, with its output in a file; the fixtures in ``tests/conftest.py``
  start and always reap them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from django.db import connections

T = TypeVar("T")

#: The repository root, where ``manage.py`` lives.
ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 15.0,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    :raises AssertionError: after ``timeout`` seconds, naming ``message`` (or
        the predicate) and the last value it returned.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last value: {value!r}"
            )
        time.sleep(interval)


def in_other_connection(fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Run ``fn`` in a new thread, so on a database connection of its own.

    Returns what ``fn`` returns and re-raises what it raises. The thread's
    connections are closed afterwards (an open one would keep PostgreSQL
    from dropping the test database).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, name="other-connection")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(
            f"the other connection did not finish within {timeout}s (blocked on a lock?)"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``manage.py`` subprocess that uses the test database."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJTASKS_TEST_USE_TEST_DB": "1",
            "DJTASKS_TEST_DB_NAME": str(connections["default"].settings_dict["NAME"]),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


class ManagedProcess:
    """``python manage.py <args>`` in its own session, output in ``log_path``.

    Started by the ``manage_py`` / ``worker`` fixtures, which reap it.
    """

    def __init__(
        self, args: Sequence[str], log_path: Path, label: str, env: dict[str, str] | None = None
    ) -> None:
        self.args = list(args)
        self.label = label
        #: Set by a test that makes the process print tracebacks on purpose.
        self.expect_tracebacks = False
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *self.args],
            cwd=ROOT,
            env=subprocess_env(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group, so reaping also reaches prefork children.
            start_new_session=True,
        )

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.label} pid={self.pid} rc={self.returncode}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def terminate(self) -> None:
        """SIGTERM: a warm shutdown for ``taskworker``."""
        self.send_signal(signal.SIGTERM)

    def crash(self) -> None:
        """SIGKILL the process and everything it started (a machine losing power)."""
        self._kill_group()
        self.proc.wait(10)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit and return its exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.label} did not exit within {timeout}s; its output:\n{self.log()}"
            ) from None

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        """Wait until ``text`` appears in the output (fails early if the process exits)."""

        def seen() -> bool:
            if text in self.log():
                return True
            if not self.alive():
                raise AssertionError(
                    f"{self.label} exited ({self.returncode}) before "
                    f"writing {text!r}; its output:\n{self.log()}"
                )
            return False

        wait_until(seen, timeout, message=f"{text!r} in the output of {self.label}")

    def reap(self, term_timeout: float = 10.0) -> None:
        """Stop the process however it takes: SIGTERM, then SIGKILL to its group."""
        try:
            if self.alive():
                self.terminate()
                try:
                    self.proc.wait(term_timeout)
                except subprocess.TimeoutExpired:
                    self._kill_group()
                    self.proc.wait(10)
        finally:
            self._log.close()

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
