"""Every code block of docs/canvas.md runs as written: in eager mode, and
against a real ``taskworker``.

``python`` blocks are executed; ``pycon`` blocks are doctests (their output
is checked, ``...`` matches anything, and only the type and message of an
exception are compared). A block after a ``% test: worker only`` line runs
only against the worker. The page's first block defines the tasks of
``proj.tasks``: it is executed as that module in the test process; workers
run the copies in ``tests/testapp/canvas_tasks.py`` (same names, same code).
"""

from __future__ import annotations

import doctest
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from djtasks.registry import tasks as registry
from tests.support import ROOT

PAGE = ROOT / "docs" / "canvas.md"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

pytestmark = pytest.mark.django_db(transaction=True)


def blocks(path: Path = PAGE) -> list[tuple[str, str, bool, int]]:
    """``(language, code, worker_only, line)`` of each fenced block."""
    text = path.read_text()
    out = []
    for m in re.finditer(r"^(% test: worker only\n)?```(\w*)\n(.*?)^```$", text, re.M | re.S):
        out.append((m.group(2), m.group(3), bool(m.group(1)), text[: m.start()].count("\n") + 1))
    return out


@pytest.fixture
def proj_tasks() -> Iterator[types.ModuleType]:
    """The page's ``proj/tasks.py``, executed as module ``proj.tasks``."""
    (lang, code, _, line), *_ = blocks()
    assert lang == "python" and code.startswith("# proj/tasks.py")
    copies = {n: registry.get(n) for n in registry.names() if n.startswith("proj.tasks.")}
    for name in copies:
        registry.unregister(name)
    proj, module = types.ModuleType("proj"), types.ModuleType("proj.tasks")
    proj.tasks = module  # type: ignore[attr-defined]
    sys.modules.update({"proj": proj, "proj.tasks": module})
    try:
        exec(compile(code, f"{PAGE}:{line}", "exec"), module.__dict__)  # noqa: S102
        defined = {n for n in registry.names() if n.startswith("proj.tasks.")}
        # What workers run must be what the page defines.
        assert defined == set(copies), (defined, set(copies))
        yield module
    finally:
        for name in registry.names():
            if name.startswith("proj.tasks."):
                registry.unregister(name)
        for task in copies.values():
            registry.register(task)
        sys.modules.pop("proj.tasks", None)
        sys.modules.pop("proj", None)


def run_page(worker_mode: bool) -> int:
    """Run the page's blocks after the first in one namespace; return how many ran."""
    globs: dict[str, Any] = {"__name__": "docs_canvas"}
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    parser = doctest.DocTestParser()
    ran = 0
    for lang, code, worker_only, line in blocks()[1:]:
        if worker_only and not worker_mode:
            continue
        name = f"{PAGE.name}:{line}"
        if lang == "python":
            exec(compile(code, name, "exec"), globs)  # noqa: S102
        elif lang == "pycon":
            test = parser.get_doctest(code, globs, name, str(PAGE), line)
            runner.run(test, clear_globs=False)
            globs.update(test.globs)  # a DocTest runs in a copy: carry names to the next
        else:
            raise AssertionError(f"{name}: a ```{lang} block; the page's blocks are run")
        ran += 1
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) of {PAGE.name} failed (see above)"
    return ran


def test_every_block_of_the_page_is_run() -> None:
    langs = {lang for lang, *_ in blocks()}
    assert langs == {"python", "pycon"}
    assert len(blocks()) > 30


@override_settings(DJTASKS_ALWAYS_EAGER=True, DJTASKS_EAGER_PROPAGATES=False)
def test_the_page_in_eager_mode(proj_tasks: types.ModuleType) -> None:
    assert run_page(worker_mode=False) > 25


def test_the_page_against_a_real_worker(proj_tasks: types.ModuleType, worker: Any) -> None:
    worker(concurrency=2)
    assert run_page(worker_mode=True) == len(blocks()) - 1
