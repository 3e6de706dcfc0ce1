"""The set-up commands of the README and the docs: checked always, run on request.

They create virtual environments and install packages from PyPI, which takes
a minute or more and needs the network, so a normal test run only checks
that the pages show exactly the commands the README and CI use, and that
this environment has djtasks from this checkout. ``DJTASKS_DOCS_INSTALL=1``
runs them for real, in a copy of the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.docs import markdown
from tests.docs.markdown import ROOT
from tests.docs.runner import Process, commands
from tests.support import wait_until

RUN_INSTALLS = os.environ.get("DJTASKS_DOCS_INSTALL") == "1"


def readme_commands() -> list[str]:
    """The README's two set-up commands: the demo, then the test suite."""
    readme = markdown.read(ROOT / "README.md")
    found = [
        block.text.strip()
        for block in readme.blocks
        if block.lang in ("sh", "console", "bash")
        and ("manage.py demo" in block.text or "tox" in block.text)
    ]
    assert len(found) == 2, f"the README should show two set-up commands, not {found}"
    return found


def check_demo_command(command: str, tmp: Path) -> None:
    """The quickstart's demo command is the README's; run it with DJTASKS_DOCS_INSTALL=1."""
    assert command == readme_commands()[0]
    assert (
        command == "python3 -m venv .venv && .venv/bin/pip install -e . && "
        ".venv/bin/python manage.py demo"
    )
    # Without the install, tests/test_demo_command.py runs `manage.py demo` itself.
    assert "manage.py" in (ROOT / "tests" / "test_demo_command.py").read_text()
    if RUN_INSTALLS:
        _run_demo_in_a_copy(command, tmp)


def check_test_command(command: str) -> None:
    """The test-suite command is the README's, and the one CI runs."""
    assert command == readme_commands()[1] == "python3 -m pip install tox && python3 -m tox"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^python3 -m tox\b", ci, re.M), ".ci/run no longer runs python3 -m tox"
    assert "pip install" in ci and "tox" in ci


def check_install_command(block: markdown.Block, tmp: Path) -> None:
    """``python -m pip install /path/to/djtasks``: this environment has djtasks
    from this checkout (tox installs it so; a developer's venv may use the
    checkout on the path); with DJTASKS_DOCS_INSTALL=1, install it in a new venv."""
    [(command, _)] = commands(block)
    assert command == "python -m pip install /path/to/djtasks"
    import djtasks

    assert Path(djtasks.__file__).resolve().is_relative_to(ROOT)
    if RUN_INSTALLS:
        venv = tmp / "install-venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        subprocess.run(
            [str(python), *command.split()[1:-1], str(ROOT)], check=True, cwd=tmp, timeout=900
        )
        subprocess.run(
            [str(python), "-c", "import djtasks, django, psycopg, croniter, environ"],
            check=True,
            cwd=tmp,
        )


def _answers(url: str) -> Callable[[], int | None]:
    """A probe for ``wait_until``: the HTTP status of ``url``, or None while it refuses."""

    def probe() -> int | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - localhost
                return reply.status
        except OSError:
            return None

    return probe


def _run_demo_in_a_copy(command: str, tmp: Path) -> None:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.skip("port 8000 is taken; the README's demo command uses it")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    copy = tmp / "checkout"
    for name in files:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DJTASKS_", "DATABASE_URL", "PYTHONPATH"))
    }
    demo = Process(["bash", "-c", command], copy, env, tmp / "demo.log")
    try:
        demo.wait_for("Press Ctrl-C to stop everything.", timeout=900)
        assert wait_until(_answers("http://127.0.0.1:8000/"), 60, interval=0.5) == 200
        assert demo.stop(signal.SIGINT, timeout=60, group=True) == 0, demo.log()
    finally:
        demo.reap()
