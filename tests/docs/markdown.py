"""Just enough of MyST Markdown for the docs tests: code blocks, links, anchors.

The test environment has no Sphinx or markdown parser (tox installs the
``test`` extra only), and the docs use a small, regular subset of MyST, so a
line-based reader is enough and keeps these tests fast:

- fenced code blocks (```` ``` ```` or ``~~~``, any length, nested inside
  ``:::`` colon fences); a fence whose info string is ``{name}`` is a MyST
  directive, not code;
- links ``[text](target)`` and ``{ref}`` roles outside code;
- headings, whose anchors follow MyST's ``myst_heading_anchors = 3`` (the
  GitHub slugs of levels 1 to 3), and explicit targets ``(label)=``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
_TARGET = re.compile(r"^\((?P<label>[^)\s]+)\)=\s*$")
_LINK = re.compile(r"(?<!\\)!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]*)(?:\s+\"[^\"]*\")?\)")
_REF = re.compile(r"\{ref\}`(?:[^`<]*<(?P<label>[^>`]+)>|(?P<plain>[^`<>]+))`")
_DOC = re.compile(r"\{doc\}`(?:[^`<]*<(?P<doc>[^>`]+)>|(?P<plain>[^`<>]+))`")
_CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_GITHUB_CLEAN = re.compile(r"[^\w\u4e00-\u9fff\- ]")


@dataclass
class Block:
    """One fenced code block: its language (info string), text and place."""

    lang: str
    text: str
    path: Path
    line: int  # of the opening fence, 1-based
    heading: str  # the nearest heading above it

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line} ({self.lang}, under {self.heading!r})"

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def file_path(self) -> str | None:
        """``shop/tasks.py`` for a block whose first line is ``# shop/tasks.py``."""
        match = re.match(r"#\s+(?P<path>[\w./-]+\.\w+)\b", self.first_line)
        return match.group("path") if match else None


@dataclass
class Directive:
    name: str
    argument: str
    body: str
    line: int


@dataclass
class Page:
    path: Path
    lines: list[str]
    blocks: list[Block] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)
    #: Line numbers (0-based) that are prose, outside any code block.
    prose: list[tuple[int, str]] = field(default_factory=list)
    headings: list[tuple[int, str]] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    @property
    def anchors(self) -> set[str]:
        """The anchors a link ``page.md#anchor`` may use: heading slugs
        (levels 1 to 3, as ``myst_heading_anchors = 3``) and ``(label)=``."""
        found: list[str] = []
        for level, title in self.headings:
            if level <= 3:
                found.append(unique_slug(slugify(title), found))
        return set(found) | set(self.targets)


def slugify(title: str) -> str:
    """MyST's GitHub-style slug of a heading's text."""
    text = _LINK.sub(lambda m: m.group("text"), title)
    text = text.replace("`", "").replace("*", "")
    return _GITHUB_CLEAN.sub("", text.lower().replace(" ", "-"))


def unique_slug(slug: str, existing: list[str]) -> str:
    uniq, i = slug, 1
    while uniq in existing:
        uniq = f"{slug}-{i}"
        i += 1
    return uniq


def read(path: Path | str) -> Page:
    """Parse one Markdown page (a path, or a name relative to ``docs/``)."""
    path = Path(path)
    if not path.is_absolute():
        path = DOCS / path
    lines = path.read_text().split("\n")
    page = Page(path, lines)
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            marker, info, indent = fence["fence"], fence["info"].strip(), len(fence["indent"])
            body: list[str] = []
            j = i + 1
            while j < len(lines):
                close = _FENCE.match(lines[j])
                if (
                    close
                    and close["fence"][0] == marker[0]
                    and len(close["fence"]) >= len(marker)
                    and not close["info"].strip()
                ):
                    break
                body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
                j += 1
            if info.startswith("{"):
                name, _, argument = info[1:].partition("}")
                page.directives.append(Directive(name, argument.strip(), "\n".join(body), i + 1))
            else:
                page.blocks.append(
                    Block(
                        info.split()[0] if info else "",
                        "\n".join(body) + "\n",
                        path,
                        i + 1,
                        heading,
                    )
                )
            i = j + 1
            continue
        match = _HEADING.match(line)
        if match:
            heading = match["title"]
            page.headings.append((len(match["hashes"]), heading))
        target = _TARGET.match(line)
        if target:
            page.targets.append(target["label"])
        page.prose.append((i, line))
        i += 1
    return page


def pages() -> list[Page]:
    """Every Markdown page of the docs (not the build output)."""
    return [read(p) for p in sorted(DOCS.rglob("*.md")) if "_build" not in p.parts]


def links(page: Page) -> list[tuple[int, str]]:
    """``(line, target)`` of every Markdown link in the page's prose."""
    found = []
    for i, line in page.prose:
        for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
            found.append((i + 1, match["target"]))
    return found


def refs(page: Page) -> list[tuple[int, str]]:
    """``(line, label)`` of every ``{ref}`` role in the page's prose."""
    found = []
    for i, line in page.prose:
        for match in _REF.finditer(line):
            found.append((i + 1, (match["label"] or match["plain"]).strip()))
    return found


def docs_roles(page: Page) -> list[tuple[int, str]]:
    found = []
    for i, line in page.prose:
        for match in _DOC.finditer(line):
            found.append((i + 1, (match["doc"] or match["plain"]).strip()))
    return found


def code_spans(text: str) -> list[str]:
    """The inline code spans of a line of prose (a table row, say)."""
    return [m.group(2).strip() for m in _CODE_SPAN.finditer(text)]


def tables(page: Page, heading: str) -> list[list[str]]:
    """The rows (as lists of cell text) of the tables under ``heading``."""
    rows: list[list[str]] = []
    current = ""
    for _, line in page.prose:
        match = _HEADING.match(line)
        if match:
            current = match["title"]
            continue
        if current != heading or not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if all(set(c) <= set("-: ") for c in cells):
            continue  # the separator row
        rows.append(cells)
    return rows
