"""Sphinx configuration for the djtasks documentation (MyST markdown).

Build with ``sphinx-build -W -b html docs docs/_build/html`` from the
repository root. Autodoc imports djtasks, so Django is set up first with the
example project's settings (no database is touched while building).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Local extensions: the generated command reference (_ext/djtasks_docs.py).
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

import django  # noqa: E402

django.setup()

import djtasks  # noqa: E402

project = "djtasks"
author = "the djtasks maintainers"
copyright = "the djtasks maintainers"
version = release = djtasks.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "djtasks_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
# Lets pages link to each other's sections: [text](calling.md#transactional-enqueue).
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Types only for parameters the docstring describes; the rest stay readable.
autodoc_typehints_description_target = "documented"
# Show defaults as written (``_UNSET``), not as ``<object object at 0x…>``.
autodoc_preserve_defaults = True

html_theme = "alabaster"
html_title = f"djtasks {release}"
html_theme_options = {
    "description": "Your Django database as the task queue.",
    "fixed_sidebar": True,
}
