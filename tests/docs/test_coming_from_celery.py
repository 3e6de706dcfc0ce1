"""docs/coming-from-celery.md: the migration runs, and the tables are true.

``test_migration`` builds the page's Celery project (``proj`` with an
``accounts`` app, from ``startproject`` and ``startapp``), then applies the
page's steps one by one to a copy of it and runs the result: migrations and
checks, a real ``taskworker`` and ``taskbeat`` started with the page's
command lines, a sign-up through the view, the welcome mail sent by the
worker, the status URL, the beat schedule in the table, the page's tests
with ``manage.py test``. Every block is taken in order (``runner.Walk``).

The Celery blocks need Celery: with it installed, the "before" project is
checked and run too (eagerly; and against a real worker when a broker at
``CELERY_BROKER_URL`` answers). Without it they are only compiled, and the
test says so in its output.

``test_every_djtasks_name_in_the_tables_exists`` resolves each djtasks name of
the side-by-side tables in the code: settings in ``conf.DEFAULTS``, decorator
and call options in the signatures, attributes on their classes, command
options in the commands' parsers, dotted names by import.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import shutil
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from djtasks import signals
from djtasks.conf import DEFAULTS
from djtasks.request import Request
from djtasks.result import AsyncResult, EagerResult, GroupResult
from djtasks.task import _OPTIONS, Task
from tests.docs import install, markdown
from tests.docs.command_parsers import parser_for
from tests.docs.runner import Project, Session, Walk, commands

PAGE = "coming-from-celery.md"
HAVE_CELERY = importlib.util.find_spec("celery") is not None


# -- the project -----------------------------------------------------------------------


def _tree_files(block: markdown.Block) -> list[str]:
    """The files of a ``text`` tree block (names without a trailing ``/``)."""
    stack: list[tuple[int, str]] = []
    files = []
    for line in block.text.rstrip().split("\n"):
        depth = len(line) - len(line.lstrip())
        name = line.strip()
        while stack and stack[-1][0] >= depth:
            stack.pop()
        path = "/".join([p for _, p in stack] + [name.rstrip("/")])
        if name.endswith("/"):
            stack.append((depth, name.rstrip("/")))
        else:
            files.append(path)
    return files


@pytest.fixture
def database(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Settings for the page's project: the suite's database engine, a fresh
    database (PostgreSQL: created and dropped here; SQLite: a file)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        yield {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
        return
    import psycopg

    parts = urlparse(url)
    name = f"djtasks_docs_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": parts.username or "",
            "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _use_database(project: Project, database: dict[str, str]) -> None:
    """Not from the page: point the project at the test's database."""
    with project.path("proj/settings.py").open("a") as f:
        f.write(
            f"\n# -- added by tests/docs: the suite's database --\n"
            f"DATABASES = {{'default': {database!r}}}\n"
        )


def _broker_answers() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0


@pytest.mark.slow
@pytest.mark.processes
def test_migration(
    tmp_path: Path, database: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    walk = Walk(markdown.read(PAGE))
    before = Project(tmp_path / "before")
    before.cwd.mkdir()
    sessions: list[Session] = []
    after: Project | None = None
    try:
        # -- "The project before" --
        tree = walk.next("text", contains="celery.py")
        before.run("django-admin startproject proj")
        before.cwd = before.path("proj")
        before.run("python manage.py startapp accounts")
        pristine_settings = before.path("proj/settings.py").read_text()
        celery_blocks = [
            before.write(walk.next("python", path="proj/celery.py")),
            before.write(walk.next("python", path="proj/__init__.py")),
        ]
        block = walk.next("python", path="proj/settings.py", contains="CELERY_BROKER_URL")
        compile(block.text, block.where, "exec")
        before.merge_settings(block, "proj/settings.py")
        for path in ("accounts/tasks.py", "accounts/views.py", "proj/urls.py"):
            celery_blocks.append(before.write(walk.next("python", path=path)))
        for path in celery_blocks:
            compile(path.read_text(), str(path), "exec")
        files = {str(p.relative_to(before.cwd.parent)) for p in before.cwd.rglob("*.py")}
        for name in _tree_files(tree):
            assert name in files, f"{tree.where}: {name} is not in the project"
        celery_commands = walk.next("console", contains="celery -A proj worker")
        _run_the_celery_project(before, celery_commands, sessions)

        # -- Step by step, on a copy --
        shutil.copytree(before.cwd, tmp_path / "after" / "proj")
        after = Project(tmp_path / "after" / "proj")
        # 1. Install.
        install.check_install_command(walk.next("console", contains="pip install"), tmp_path)
        # 2. The settings: startproject's, without the Celery excerpt, plus the page's.
        after.path("proj/settings.py").write_text(pristine_settings)
        after.merge_settings(
            walk.next("python", path="proj/settings.py", contains="DJTASKS_BEAT_SCHEDULE"),
            "proj/settings.py",
        )
        assert "CELERY" not in after.path("proj/settings.py").read_text()
        _use_database(after, database)
        # 3. No Celery app.
        for _ in after.console(walk.next("console", contains="rm proj/celery.py")):
            pass
        assert not after.path("proj/celery.py").exists()
        after.write(walk.next("python", path="proj/__init__.py"))
        # 4. The tasks' imports.
        block = walk.next("python", path="accounts/tasks.py")
        assert "celery" not in block.text.lower(), f"{block.where} still uses Celery"
        after.write(block)
        # 5. The calling code.
        for path in ("accounts/views.py", "proj/urls.py"):
            block = walk.next("python", path=path)
            assert "celery" not in block.text.lower(), f"{block.where} still uses Celery"
            after.write(block)
        # 6. The tables, and the checks (with no Celery left to import).
        for _ in after.console(walk.next("console", contains="migrate")):
            pass

        # 7. The worker and beat, with the page's command lines.
        block = walk.next("console", contains="taskworker")
        (worker_cmd, _), (beat_cmd, _) = commands(block)
        worker = after.start(worker_cmd, "worker")
        beat = after.start(beat_cmd, "beat")
        worker.wait_for("ready")
        beat.wait_for("djtasks")

        session = Session(after, "proj.settings")
        sessions.append(session)
        status, state, leader_synced = session.exec(
            "from django.test import Client\n"
            "from djtasks import AsyncResult\n"
            "from djtasks.models import PeriodicTask\n"
            "import time\n"
            "client = Client(SERVER_NAME='localhost')\n"
            "reply = client.post('/sign-up/', {'username': 'ada', 'email': 'ada@example.com'})\n"
            "assert reply.status_code == 201, reply.content\n"
            "status_url = reply.json()['status_url']\n"
            "token = status_url.rstrip('/').rsplit('/', 1)[1]\n"
            "task_id = token.split(':')[0]\n"
            "assert AsyncResult(task_id).get(timeout=30) == 'ada@example.com'\n"
            "deadline = time.monotonic() + 30\n"
            "while not PeriodicTask.objects.filter(name='purge-inactive-accounts').exists():\n"
            "    assert time.monotonic() < deadline, 'beat did not copy the schedule'\n"
            "    time.sleep(0.1)\n"
            "_result = [client.get(status_url).json(),\n"
            "           client.get(f'/tasks/{task_id}/').json(),\n"
            "           PeriodicTask.objects.get(name='purge-inactive-accounts').task]\n"
        )
        assert status["state"] == "SUCCESS" and status["ready"] is True
        assert state == {"state": "SUCCESS"}
        assert leader_synced == "accounts.tasks.purge_inactive_accounts"
        # The console e-mail backend printed the mail in the worker.
        worker.wait_for("Subject: Welcome!")
        assert "To: ada@example.com" in worker.log()
        assert "accounts.tasks.send_welcome_email[" in worker.log()
        assert (
            session.exec(
                "from accounts.tasks import purge_inactive_accounts\n"
                "_result = purge_inactive_accounts.delay(days=365).get(timeout=30)\n"
            )
            == 0
        )

        # 8. The tests.
        after.write(walk.next("python", path="accounts/tests.py"))
        [(command, _)] = commands(walk.next("console", contains="manage.py test accounts"))
        done = after.run(command)
        assert "Ran 2 tests" in done.stderr and "\nOK" in done.stderr, done.stderr

        # 9. Switching over: Celery's inspect commands (run against the Celery project).
        block = walk.next("console", contains="inspect scheduled")
        _run_celery_inspect(before, block)

        for process, name in ((worker, "worker"), (beat, "beat")):
            assert process.stop(signal.SIGTERM) == 0, f"{name}:\n{process.log()}"
        walk.done()
    finally:
        for session in sessions:
            session.close()
        before.reap()
        if after is not None:
            after.reap()
    with capsys.disabled():
        if not HAVE_CELERY:
            print(
                "\n[docs] Celery is not installed: the page's Celery blocks were compiled, not run"
            )


def _run_the_celery_project(
    before: Project, block: markdown.Block, sessions: list[Session]
) -> None:
    """With Celery installed: check the "before" project and run it eagerly,
    then with a real worker and beat when a broker answers."""
    if not HAVE_CELERY:
        return
    before.run("python manage.py check")
    session = Session(before, "proj.settings")
    sessions.append(session)
    assert session.exec(
        "from django.core import mail\n"
        "from django.test import Client, override_settings\n"
        "from proj import celery_app\n"
        "celery_app.conf.task_always_eager = True\n"
        "with override_settings(EMAIL_BACKEND='django.core.mail.backends.locmem.EmailBackend'):\n"
        "    mail.outbox = []\n"
        "    from django.core.management import call_command\n"
        "    call_command('migrate', verbosity=0)\n"
        "    reply = Client(SERVER_NAME='localhost').post(\n"
        "        '/sign-up/', {'username': 'ada', 'email': 'ada@example.com'})\n"
        "    _result = [reply.status_code, [m.to for m in mail.outbox]]\n"
    ) == [201, [["ada@example.com"]]]
    if not _broker_answers():
        return
    (worker_cmd, _), (beat_cmd, _) = commands(block)
    worker = before.start(worker_cmd, "celery-worker")
    beat = before.start(beat_cmd, "celery-beat")
    worker.wait_for("ready.", timeout=60)
    beat.wait_for("beat: Starting", timeout=60)
    assert (
        session.exec(
            "from accounts.tasks import purge_inactive_accounts\n"
            "celery_app.conf.task_always_eager = False\n"
            "_result = purge_inactive_accounts.delay(365).get(timeout=30)\n"
        )
        == 0
    )
    before.celery_worker = worker  # type: ignore[attr-defined]


def _run_celery_inspect(before: Project, block: markdown.Block) -> None:
    worker = getattr(before, "celery_worker", None)
    if worker is None:
        return  # no Celery, or no broker: nothing to inspect
    for command, _ in commands(block):
        before.run(command)
    worker.stop(signal.SIGTERM, timeout=30)


# -- the tables ------------------------------------------------------------------------

SECTIONS = (
    "Declaring tasks",
    "Calling",
    "Inside a task",
    "Results",
    "Canvas",
    "Periodic tasks",
    "Settings",
    "The worker and beat command lines",
    "Inspect and control",
    "Signals",
    "States and exceptions",
)
CLASSES: dict[str, Any] = {
    "Task": Task,
    "AsyncResult": AsyncResult,
    "EagerResult": EagerResult,
    "GroupResult": GroupResult,
}


def _parameters(func: Any) -> tuple[set[str], bool]:
    params = inspect.signature(func).parameters
    return set(params), any(p.kind is p.VAR_KEYWORD for p in params.values())


def _check_call(func: Any, names: list[str], span: str) -> None:
    known, _ = _parameters(func)
    for name in names:
        assert name in known, f"`{span}`: {func.__qualname__} takes no {name}="


def _check_command(span: str) -> None:
    words = span.split()
    parser: argparse.ArgumentParser = parser_for(words[0])
    for word in words[1:]:
        if word.startswith("-"):
            flags = {s for a in parser._actions for s in a.option_strings}
            assert word in flags, f"`{span}`: {parser.prog} has no option {word}"
            continue
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            assert word in subs[0].choices, f"`{span}`: {parser.prog} has no command {word}"
            parser = subs[0].choices[word]
            continue
        positional = [a for a in parser._actions if not a.option_strings and a.choices]
        assert positional and word in positional[0].choices, (
            f"`{span}`: {word!r} is not an argument choice of {parser.prog}"
        )


def _check_dotted(span: str) -> None:
    parts = span.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            assert hasattr(obj, attr), f"`{span}`: {'.'.join(parts[:i])} has no {attr}"
            obj = getattr(obj, attr)
        return
    raise AssertionError(f"`{span}`: cannot import it")


def check_name(span: str) -> None:
    """Fail unless the djtasks name ``span`` (as written in a table) exists."""
    import re

    span = span.rstrip(".")
    if span.startswith("DJTASKS_"):
        assert span.removeprefix("DJTASKS_") in DEFAULTS, f"`{span}` is not a setting"
    elif span in ("@task", "@shared_task"):
        assert callable(importlib.import_module("djtasks").__dict__[span[1:]])
    elif match := re.fullmatch(r"@task\((\w+)=\)", span):
        assert match[1] in _OPTIONS, f"`{span}`: @task has no option {match[1]}"
    elif match := re.fullmatch(r"(?:Task\.)?apply_async\(([\w=, ]*)\)", span):
        _check_call(Task.apply_async, re.findall(r"(\w+)=", match[1]), span)
    elif match := re.fullmatch(r"self\.request\.(\w+)", span):
        assert match[1] in Request.__dataclass_fields__ or hasattr(Request, match[1]), (
            f"`{span}`: Request has no {match[1]}"
        )
    elif (match := re.fullmatch(r"(\w+)\.(\w+)(\(([\w=, ]*)\))?", span)) and match[1] in (
        *CLASSES,
        "Signature",
    ):
        owner = CLASSES.get(match[1]) or importlib.import_module("djtasks.canvas").Signature
        assert hasattr(owner, match[2]), f"`{span}`: {match[1]} has no {match[2]}"
        if match[4]:
            _check_call(getattr(owner, match[2]), re.findall(r"(\w+)=", match[4]), span)
    elif match := re.fullmatch(r"signature\(.*\)\.(\w+)\(\)", span):
        canvas = importlib.import_module("djtasks.canvas")
        assert callable(importlib.import_module("djtasks").signature)
        assert hasattr(canvas.Signature, match[1]), f"`{span}`: Signature has no {match[1]}"
    elif span.split()[0] in ("taskworker", "taskbeat", "taskctl"):
        _check_command(span)
    elif re.fullmatch(r"[\w.]+", span) and "." in span:
        _check_dotted(span)
    else:
        raise AssertionError(f"`{span}`: the test does not know how to check this name")


def test_every_djtasks_name_in_the_tables_exists() -> None:
    page = markdown.read(PAGE)
    checked = 0
    for section in SECTIONS:
        rows = markdown.tables(page, section)
        assert rows, f"no table under {section!r}"
        assert rows[0][:2] == ["Celery", "djtasks"], f"{section}: unexpected header {rows[0]}"
        for row in rows[1:]:
            for span in markdown.code_spans(row[1]):
                check_name(span.replace("\\|", "|"))
                checked += 1
    assert checked > 150


def test_the_tables_cover_every_option_and_signal() -> None:
    page = markdown.read(PAGE)

    def column(section: str) -> str:
        return " ".join(row[1] for row in markdown.tables(page, section)[1:])

    declared = column("Declaring tasks")
    assert not [o for o in _OPTIONS if f"@task({o}=)" not in declared], (
        "@task options missing from the Declaring tasks table"
    )
    calling = column("Calling")
    params = set(inspect.signature(Task.apply_async).parameters) - {"self"}
    assert not [
        p for p in params if f"apply_async({p}=)" not in calling and f"{p}=" not in calling
    ], "apply_async options missing from Calling"
    listed = column("Signals")
    assert not [s for s in signals.__all__ if f"djtasks.signals.{s}" not in listed]


def test_the_checker_catches_wrong_names() -> None:
    for wrong in (
        "DJTASKS_BROKER_URL",
        "@task(base=)",
        "apply_async(routing_key=)",
        "AsyncResult.children",
        "taskworker -B",
        "taskctl inspect active_queues",
        "djtasks.exceptions.Ignore",
        "self.request.group",
    ):
        with pytest.raises(AssertionError):
            check_name(wrong)
