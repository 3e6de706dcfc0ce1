"""The quickstart (docs/getting-started.md) and docs/testing.md, run for real.

Every code block of both pages is taken in order (``runner.Walk`` fails the
test if one is left out): ``console`` blocks are run as commands,
``python`` blocks that name a file become that file of the project,
``pycon`` blocks run as doctests in ``manage.py shell``. The project is the
one the page makes: ``django-admin startproject mysite``, SQLite, as a new
project has (so the same test runs whatever database the suite uses).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs import install, markdown
from tests.docs.runner import Project, Session, Walk, assert_lines_in_order, commands

pytestmark = [pytest.mark.slow, pytest.mark.processes]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """Walk docs/getting-started.md from the first block to the last; yield
    the project it built (``mysite``, with a ``shop`` app)."""
    tmp = tmp_path_factory.mktemp("quickstart")
    walk = Walk(markdown.read("getting-started.md"))
    project = Project(tmp)
    session: Session | None = None
    try:
        # "Try the demo": the README's two commands.
        demo = walk.next("console", contains="manage.py demo")
        install.check_demo_command(commands(demo)[0][0], tmp)
        tests = walk.next("console", contains="tox")
        install.check_test_command(commands(tests)[0][0])

        # "Install".
        install.check_install_command(walk.next("console", contains="pip install"), tmp)

        # "Add djtasks to a project".
        for _ in project.console(walk.next("console", contains="startproject")):
            pass
        assert project.path("manage.py").exists() and project.path("shop").is_dir()
        project.merge_settings(
            walk.next("python", path="mysite/settings.py", contains="INSTALLED_APPS"),
            "mysite/settings.py",
        )
        for _ in project.console(walk.next("console", contains="migrate")):
            pass
        project.merge_settings(
            walk.next("python", path="mysite/settings.py", contains="OPTIONS"), "mysite/settings.py"
        )

        # "Write a task".
        project.write(walk.next("python", path="shop/tasks.py"))

        # "Queue a call": the shell session, before any worker runs.
        session = Session(project, "mysite.settings")
        session.doctest(walk.next("pycon", contains="add.delay(2, 3)"))

        # "Run a worker": the banner and the log lines as the page shows them.
        block = walk.next("console", contains="taskworker")
        [(command, expected)] = commands(block)
        worker = project.start(command, "quickstart-worker")
        worker.wait_for("SUCCESS")
        assert_lines_in_order(expected, worker.log(), block.where)

        # "Check the result", back in the same shell.
        session.doctest(walk.next("pycon", contains="result.get(timeout=10)"))
        session.exec(walk.next("python", contains="AsyncResult(").text)
        assert session.exec("_result = result.state") == "PENDING"  # a made-up id

        # "Show progress on a page": the view, the URLs, and what a page sees.
        project.write(walk.next("python", path="shop/views.py"))
        project.write(walk.next("python", path="mysite/urls.py"))
        reply = session.exec(
            "from django.test import Client\n"
            "client = Client(SERVER_NAME='localhost')\n"
            "response = client.post('/start/')\n"
            "status_url = response.json()['status_url']\n"
            "from djtasks import AsyncResult\n"
            "AsyncResult(status_url.rstrip('/').rsplit('/', 1)[1].split(':')[0]).get(timeout=20)\n"
            "_result = [response.status_code, status_url, client.get(status_url).json()]\n"
        )
        status_code, status_url, status = reply
        assert status_code == 202 and status_url.startswith("/tasks/status/")
        assert status["state"] == "SUCCESS" and status["ready"] is True
        assert status["progress"] == {"percent": 100.0}
        assert "result" not in status  # not staff, not public_result

        # "Ctrl-C stops the worker after the tasks it is running have finished."
        assert worker.stop(signal.SIGINT, group=True) == 0, worker.log()
        assert "stopped after" in worker.log()
        walk.done()
        yield project
    finally:
        if session is not None:
            session.close()
        project.reap()


def test_getting_started(quickstart: Project) -> None:
    """The fixture walked the whole page; the project it left works."""
    quickstart.run("python manage.py check")


def test_testing_page(quickstart: Project) -> None:
    """docs/testing.md, in the quickstart's project: its tests pass there."""
    walk = Walk(markdown.read("testing.md"))
    quickstart.write(walk.next("python", path="shop/tasks.py", contains="def flaky"))
    quickstart.write(walk.next("python", path="shop/tests.py", contains="class FunctionTests"))
    for marker in ("class EagerTests", "class QueuedTests", "class WorkerTests"):
        block = walk.next("python", path="shop/tests.py", contains=marker)
        assert "(continued)" in block.first_line
        quickstart.append(block)
    block = walk.next("console", contains="manage.py test shop")
    [(command, _)] = commands(block)
    done = quickstart.run(command)
    assert "Ran 7 tests" in done.stderr and "OK" in done.stderr, done.stderr

    quickstart.write(walk.next("python", path="shop/test_with_pytest.py"))
    block = walk.next("console", contains="pytest")
    [(command, _)] = commands(block)
    done = quickstart.run(command + " -p no:cacheprovider")
    assert "2 passed" in done.stdout, done.stdout + done.stderr
    walk.done()


def test_the_walk_refuses_a_skipped_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# T\n\n```python\nx = 1\n```\n\n```console\n$ true\n```\n")
    walk = Walk(markdown.read(page))
    walk.next("python")
    with pytest.raises(AssertionError, match="blocks no test runs"):
        walk.done()
