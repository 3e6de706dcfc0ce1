"""Runs inside ``manage.py shell`` of a docs project (see ``runner.Session``).

Reads one JSON step per line on stdin and answers one line per step on
stdout, prefixed with ``@@ `` (the shell and Django may print other lines).
Steps share one namespace, like an interactive session:

- ``{"kind": "doctest", "source": ..., "name": ...}``: the ``>>>`` examples of
  a ``pycon`` block, compared after ``runner.normalize``;
- ``{"kind": "exec", "source": ...}``: Python; a ``_result`` it sets is sent
  back (as JSON);
- ``{"kind": "quit"}``.

This file is not a test module; it is not imported by pytest.
"""

from __future__ import annotations

import doctest
import io
import json
import sys
import traceback
from typing import Any


def _normalize(text: str) -> str:
    # The same rules as the tests' (runner.normalize), without importing the
    # test package into the user's project.
    import re

    rules = [
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<UUID>"),
        (r"datetime\.datetime\([^)]*\)\)?", "<DATETIME>"),
        (r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]?\d*(\+\d\d:\d\d)?", "<TIME>"),
        (r"\b\d+@[\w.-]+", "<WORKER>"),
    ]
    for pattern, placeholder in rules:
        text = re.sub(pattern, placeholder, text)
    return text.strip()


class Checker(doctest.OutputChecker):
    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return _normalize(want) == _normalize(got) or super().check_output(want, got, optionflags)


def main() -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    out = sys.stdout
    for line in sys.stdin:
        step = json.loads(line)
        answer: dict[str, Any] = {"ok": True}
        try:
            if step["kind"] == "quit":
                print("@@ " + json.dumps(answer), file=out, flush=True)
                return
            if step["kind"] == "doctest":
                parser = doctest.DocTestParser()
                test = parser.get_doctest(step["source"], namespace, step["name"], None, 0)
                report = io.StringIO()
                runner = doctest.DocTestRunner(checker=Checker(), verbose=False)
                result = runner.run(test, out=report.write, clear_globs=False)
                namespace.update(test.globs)
                answer = {
                    "ok": result.failed == 0 and result.attempted > 0,
                    "report": report.getvalue() or "no examples",
                }
            else:
                namespace.pop("_result", None)
                exec(compile(step["source"], step.get("name", "<docs>"), "exec"), namespace)  # noqa: S102 - the docs' code
                answer["result"] = namespace.get("_result")
        except BaseException:
            answer = {"ok": False, "report": traceback.format_exc()}
        print("@@ " + json.dumps(answer, default=str), file=out, flush=True)


if __name__ == "__main__":
    main()
