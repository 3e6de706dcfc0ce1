"""``manage.py demo`` comes up, serves the example page and the admin, and
stops every process it started on SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
    return fields[0], int(fields[1])


def _descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``, with its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            children.setdefault(stat[1], []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            found[child] = cmdline.replace(b"\0", b" ").decode(errors="replace")
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has exited


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http://127.0.0.1
        return response.status, response.read().decode()


def _wait_for(condition, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"demo exited early ({proc.returncode}):\n{log.read_text()}")
        try:
            value = condition()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"no {what} after {timeout}s:\n{log.read_text()}")


def test_demo_serves_pages_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "demo.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJTASKS_TEST_USE_TEST_DB", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    seen: dict[int, str] = {}
    try:
        status, _ = _wait_for(lambda: _get(f"{base}/"), 60, "example page", proc, log)
        assert status == 200
        status, body = _get(f"{base}/admin/")  # redirects to the login page
        assert status == 200
        assert 'name="username"' in body

        expected = ["runserver", "taskworker"]
        if "taskbeat" in get_commands():
            expected.append("taskbeat")

        def children_up() -> bool:
            seen.update(_descendants(proc.pid))
            commands = " | ".join(seen.values())
            return all(name in commands for name in expected)

        _wait_for(children_up, 30, " and ".join(expected), proc, log)
        assert "Admin login created: user 'admin'" in log.read_text()

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:  # the test failed: leave nothing behind
            for pid in [*_descendants(proc.pid), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()

    output = log.read_text()
    assert "Stopped." in output
    assert "did not stop in time" not in output
    left = {pid: cmd for pid, cmd in seen.items() if _alive(pid)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running: {left}"
