"""Every internal link of the docs and the README resolves.

``sphinx-build -b linkcheck`` checks external links and needs the network;
this checks what can break when a page or a heading is renamed: relative
links to pages and files, their ``#anchors`` (heading slugs and ``(label)=``
targets), ``{ref}`` and ``{doc}`` roles, toctree entries and images. External
links (``http://``, ``https://``, ``mailto:``) are not followed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs import markdown
from tests.docs.markdown import DOCS, ROOT

PAGES = markdown.pages()
BY_PATH = {p.path: p for p in PAGES}
LABELS = {label for p in PAGES for label in p.targets}
EXTERNAL = ("http://", "https://", "mailto:")


def _resolve(source: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return ((source.parent / path).resolve() if path else source), anchor


def _check_target(source: Path, target: str) -> str | None:
    """What is wrong with a link from ``source`` to ``target``, or None."""
    if target.startswith(EXTERNAL) or target.startswith("<"):
        return None
    path, anchor = _resolve(source, target)
    if not path.exists():
        return f"{target}: no such file"
    if anchor:
        if path.suffix != ".md":
            return f"{target}: an anchor into a file that is not a page"
        page = BY_PATH.get(path) or markdown.read(path)
        if anchor not in page.anchors:
            return f"{target}: no heading or (label)= with the anchor {anchor!r} in {path.name}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.path.relative_to(DOCS)))
def test_links_and_refs_resolve(page: markdown.Page) -> None:
    problems = []
    for line, target in markdown.links(page):
        if (problem := _check_target(page.path, target)) is not None:
            problems.append(f"line {line}: {problem}")
    for line, label in markdown.refs(page):
        if label not in LABELS:
            problems.append(f"line {line}: {{ref}} target {label!r} is defined nowhere")
    for line, doc in markdown.docs_roles(page):
        if not (page.path.parent / f"{doc}.md").exists() and not (DOCS / f"{doc}.md").exists():
            problems.append(f"line {line}: {{doc}} {doc!r} is no page")
    for directive in page.directives:
        if directive.name == "toctree":
            for entry in directive.body.split("\n"):
                entry = entry.strip()
                if entry and not entry.startswith(":"):
                    if not (page.path.parent / f"{entry}.md").exists():
                        problems.append(
                            f"line {directive.line}: toctree entry {entry!r} is no page"
                        )
        elif directive.name in ("image", "figure"):
            if not (page.path.parent / directive.argument).exists():
                problems.append(f"line {directive.line}: no image {directive.argument}")
    assert not problems, f"{page.path.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_readme_links_resolve() -> None:
    readme = markdown.read(ROOT / "README.md")
    problems = [
        f"line {line}: {problem}"
        for line, target in markdown.links(readme)
        if (problem := _check_target(readme.path, target)) is not None
    ]
    assert not problems, "README.md:\n" + "\n".join(problems)


def test_every_page_is_in_the_toctree_or_an_orphan() -> None:
    index = BY_PATH[DOCS / "index.md"]
    listed = {
        (DOCS / f"{entry.strip()}.md").resolve()
        for d in index.directives
        if d.name == "toctree"
        for entry in d.body.split("\n")
        if entry.strip() and not entry.strip().startswith(":")
    }
    missing = [
        str(p.path.relative_to(DOCS))
        for p in PAGES
        if p.path != DOCS / "index.md"
        and p.path not in listed
        and not p.lines[:3] == ["---", "orphan: true", "---"]
    ]
    assert not missing, f"pages in no toctree of index.md: {missing}"


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A `code` heading\n\n(a-label)=\n### Third\n")
    assert _check_target(page, "page.md#a-code-heading") is None
    assert _check_target(page, "page.md#a-label") is None
    assert _check_target(page, "#third") is None
    assert _check_target(page, "page.md#nope") is not None
    assert _check_target(page, "missing.md") is not None
    assert _check_target(page, "https://example.com/missing") is None
