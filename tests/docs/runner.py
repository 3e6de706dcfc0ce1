"""Running the docs' code blocks for real, in a throw-away Django project.

- :class:`Walk` hands a page's code blocks to a test one by one, in the order
  of the page, and fails the test if a block was skipped: adding a block to
  a page without running it is an error.
- :class:`Project` is a directory with a ``manage.py``: it writes the files
  that blocks name (``# shop/tasks.py``), merges settings excerpts, runs the
  commands of ``console`` blocks, and starts long-running ones
  (``taskworker``, ``taskbeat``) as processes that are always reaped.
- :func:`run_session` runs ``pycon`` blocks as doctests inside the project
  (``manage.py shell``), comparing output after :func:`normalize` has
  replaced what changes from run to run (ids, times, host names).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.docs.markdown import ROOT, Block, Page
from tests.support import wait_until

DRIVER = Path(__file__).with_name("driver.py")

#: Commands that run until stopped: started in the background.
LONG_RUNNING = {"taskworker", "taskbeat", "demo", "runserver"}


class Walk:
    """A page's code blocks, taken in order by :meth:`next`."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.index = 0

    def next(
        self, lang: str | tuple[str, ...], *, contains: str = "", path: str | None = None
    ) -> Block:
        """The next block, which must have this language (and text, and file path)."""
        langs = (lang,) if isinstance(lang, str) else lang
        assert self.index < len(self.page.blocks), (
            f"{self.page.path.name}: the test expects another {langs} block after the last one"
        )
        block = self.page.blocks[self.index]
        self.index += 1
        assert block.lang in langs, f"{block.where}: expected a {langs} block here"
        assert contains in block.text, f"{block.where}: expected a block with {contains!r}"
        if path is not None:
            assert block.file_path == path, f"{block.where}: expected the file {path}"
        return block

    def done(self) -> None:
        left = self.page.blocks[self.index :]
        assert not left, "blocks no test runs: " + ", ".join(b.where for b in left)


# -- output ------------------------------------------------------------------------

_NORMALIZE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<UUID>"),
    (re.compile(r"datetime\.datetime\([^)]*\)\)?"), "<DATETIME>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]?\d*(\+\d\d:\d\d)?"), "<TIME>"),
    (re.compile(r"\b\d+@[\w.-]+"), "<WORKER>"),
    (re.compile(r"djtasks \d+\.\d+\.\d+\S*"), "djtasks <VERSION>"),
    (re.compile(r"(?<![\w.])/[^\s()']+"), "<PATH>"),
    (re.compile(r"\d+(\.\d+)?"), "N"),
]


def normalize(text: str) -> str:
    """``text`` with what differs between runs replaced by placeholders."""
    for pattern, placeholder in _NORMALIZE:
        text = pattern.sub(placeholder, text)
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def assert_lines_in_order(expected: str, actual: str, what: str) -> None:
    """Each line of ``expected`` appears in ``actual``, in order (after
    :func:`normalize`); ``actual`` may have more lines in between."""
    wanted = [line for line in normalize(expected).split("\n") if line.strip()]
    have = normalize(actual).split("\n")
    position = 0
    for line in wanted:
        for i in range(position, len(have)):
            if have[i].strip() == line.strip():
                position = i + 1
                break
        else:
            raise AssertionError(
                f"{what}: the line\n    {line}\nwas not found (in order) in the output:\n"
                + textwrap.indent(normalize(actual), "    ")
            )


# -- console blocks ------------------------------------------------------------------


def commands(block: Block) -> list[tuple[str, str]]:
    """``(command, expected output)`` for each ``$`` line of a console block."""
    found: list[tuple[str, list[str]]] = []
    for line in block.text.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            found.append((line[2:].split("  #")[0].strip(), []))
        elif found:
            found[-1][1].append(line)
    return [(cmd, "\n".join(out)) for cmd, out in found]


def python_settings(text: str, settings: str) -> str:
    """``settings`` with the statements of the excerpt ``text`` merged in.

    An assignment to a name that the settings already assign at top level
    replaces that assignment; anything else (imports, ``+=``, item
    assignments, new names) is appended, so later statements see earlier ones.
    """
    source = text.split("\n")
    appended: list[str] = []
    for node in ast.parse(text).body:
        chunk = source[node.lineno - 1 : node.end_lineno]
        name = _assigned_name(node)
        span = _assignments(settings).get(name) if name else None
        if span is None:
            appended.extend(chunk)
            continue
        lines = settings.split("\n")
        lines[span[0] - 1 : span[1]] = chunk
        settings = "\n".join(lines)
    if appended:
        settings += "\n\n# -- from the docs --\n" + "\n".join(appended) + "\n"
    return settings


def _assigned_name(node: ast.stmt) -> str | None:
    if (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
    ):
        return node.targets[0].id
    return None


def _assignments(settings: str) -> dict[str, tuple[int, int]]:
    return {
        name: (node.lineno, node.end_lineno or node.lineno)
        for node in ast.parse(settings).body
        if (name := _assigned_name(node))
    }


class Process:
    """A long-running command of a console block, output in a log file."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.log_path = log
        self._log = open(log, "wb")
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if text in self.log():
                return True
            assert self.proc.poll() is None, (
                f"{self.argv} exited ({self.proc.returncode}) before {text!r}:\n{self.log()}"
            )
            return False

        try:
            wait_until(seen, timeout, interval=0.05, message=f"{text!r} from {self.argv}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\noutput:\n{self.log()}") from None

    def stop(self, signum: int = signal.SIGINT, timeout: float = 20.0, group: bool = False) -> int:
        """Send ``signum`` (Ctrl-C by default) and return the exit code; with
        ``group``, to the whole process group, as a terminal's Ctrl-C does."""
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, signum)
            else:
                self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.argv} did not stop within {timeout}s:\n{self.log()}"
            ) from None

    def reap(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
        except ProcessLookupError:
            pass
        finally:
            self._log.close()


class Project:
    """A directory where the docs' commands run, with its environment."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "DJTASKS_", "DATABASE_URL"))
        }
        # djtasks from this checkout, installed (tox) or not (a developer's venv).
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.update(env or {})
        self.processes: list[Process] = []

    # -- files --

    def path(self, relative: str) -> Path:
        return self.cwd / relative

    def write(self, block: Block, relative: str | None = None) -> Path:
        """Write the file a block names in its first line (the whole block)."""
        relative = relative or block.file_path
        assert relative, f"{block.where}: the block names no file"
        target = self.path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text)
        return target

    def append(self, block: Block, relative: str | None = None) -> None:
        target = self.path(relative or block.file_path or "")
        with target.open("a") as f:
            f.write("\n" + block.text)

    def merge_settings(self, block: Block, relative: str) -> None:
        target = self.path(relative)
        target.write_text(python_settings(block.text, target.read_text()))

    # -- commands --

    def argv(self, command: str) -> list[str]:
        words = shlex.split(command)
        if words[0] in ("python", "python3"):
            return [sys.executable, *words[1:]]
        if words[0] == "celery":
            return [sys.executable, "-m", "celery", *words[1:]]
        if words[0] == "django-admin":
            admin = Path(sys.executable).with_name("django-admin")
            return (
                [str(admin), *words[1:]]
                if admin.exists()
                else [sys.executable, "-m", "django", *words[1:]]
            )
        return words

    def run(
        self, command: str, expected: str = "", timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to its end; its output must contain ``expected``'s lines."""
        argv = self.argv(command)
        done = subprocess.run(
            argv,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        output = done.stdout + done.stderr
        if check:
            assert done.returncode == 0, f"`{command}` exited with {done.returncode}:\n{output}"
        if expected.strip():
            assert_lines_in_order(expected, output, f"`{command}`")
        return done

    def start(self, command: str, label: str) -> Process:
        process = Process(self.argv(command), self.cwd, self.env, self.cwd.parent / f"{label}.log")
        self.processes.append(process)
        return process

    def console(self, block: Block) -> Iterator[tuple[str, Process | None]]:
        """Run a console block's commands in order. ``cd`` changes directory;
        long-running commands are started and yielded for the caller to check
        and stop; others run to completion and must succeed."""
        for command, expected in commands(block):
            words = shlex.split(command)
            if words[0] == "cd":
                self.cwd = (self.cwd / words[1]).resolve()
                yield command, None
            elif _long_running(words):
                yield command, self.start(command, words[2] if len(words) > 2 else words[0])
            else:
                self.run(command, expected)
                yield command, None

    def reap(self) -> None:
        for process in reversed(self.processes):
            process.reap()


def _long_running(words: list[str]) -> bool:
    if "--burst" in words or "--max-tasks" in words:
        return False
    return any(w in LONG_RUNNING for w in words[:3]) or (
        words[:2] == ["celery", "-A"] and any(w in ("worker", "beat") for w in words)
    )


# -- pycon blocks --------------------------------------------------------------------


class Session:
    """A ``manage.py shell`` that runs doctests and Python blocks on request.

    Steps are sent one at a time (a line of JSON on stdin); each answers a
    line of JSON. The shell keeps one namespace, as an interactive one would.
    """

    def __init__(self, project: Project, settings: str) -> None:
        env = dict(project.env, DJANGO_SETTINGS_MODULE=settings)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                f"import runpy; runpy.run_path({str(DRIVER)!r}, run_name='__main__')",
            ],
            cwd=project.cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def _send(self, step: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(step) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(
                    f"the shell exited ({self.proc.wait()}):\n"
                    f"{self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            if line.startswith("@@ "):
                return json.loads(line[3:])
        raise AssertionError("the shell did not answer in time")

    def doctest(self, block: Block) -> None:
        """Run a ``pycon`` block as a doctest; its output must match (normalized)."""
        answer = self._send({"kind": "doctest", "source": block.text, "name": block.where})
        assert answer["ok"], f"{block.where}:\n{answer['report']}"

    def exec(self, source: str, name: str = "<test>") -> Any:
        """Run Python in the shell's namespace; return ``_result`` if it sets one."""
        answer = self._send({"kind": "exec", "source": source, "name": name})
        assert answer["ok"], f"{name}:\n{answer['report']}"
        return answer.get("result")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"kind": "quit"}, timeout=10)
            except AssertionError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
