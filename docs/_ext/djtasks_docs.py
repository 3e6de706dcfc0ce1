"""Sphinx extension for the djtasks docs: the ``djtasks-command`` directive.

``` {djtasks-command} taskworker ``` renders the usage and the options of
``manage.py taskworker`` from its argparse parser (see ``command_reference``),
so the command reference cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

import command_reference
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


class CommandDirective(SphinxDirective):
    required_arguments = 1
    option_spec = {"heading": str}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        text = command_reference.markdown(name, self.options.get("heading", "###"))
        container = nodes.container()
        self.state.nested_parse(
            StringList(text.splitlines(), source=f"manage.py {name}"),
            self.content_offset,
            container,
        )
        return container.children


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("djtasks-command", CommandDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
