"""From the name stored in a task row to a ``django.tasks.Task``, safely.

A django.tasks row stores ``Task.module_path`` (``"shop.tasks.send_receipt"``)
and anyone who can write to the table can write any name there. So a name is
only ever turned into code like this:

1. It is ``<module>.<function>``: dotted identifiers, the function at the top
   level of its module.
2. The module belongs to an installed app (``shop.tasks`` of app ``shop``), or
   is named in ``DJTASKS_IMPORTS`` (or is inside a package named there). No
   other module is imported, or even looked up if something else imported it:
   ``os.system`` and ``subprocess.check_output`` stop here.
3. The attribute is a ``django.tasks.Task`` whose ``module_path`` is the name.
   A function, a class, a module re-exported under that name: refused.

Only then does anything run. :func:`check_loadable` applies rules 1 and 2 to a
task at enqueue time, so a task the workers would refuse fails at the call.
"""

from __future__ import annotations

import importlib
import re
import sys

from django.apps import apps
from django.tasks import Task

from ..conf import settings

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class TaskNotLoadable(Exception):  # noqa: N818 - reads better at the raise site
    """A row's task name does not lead to a django.tasks Task this process may run."""


def _in_imports(module: str) -> bool:
    imports = settings.IMPORTS or ()
    return any(
        module == m or module.startswith(m + ".") for m in imports if isinstance(m, str) and m
    )


def module_allowed(module: str) -> bool:
    """Whether djtasks may import (and look into) ``module`` to find tasks."""
    return apps.get_containing_app_config(module) is not None or _in_imports(module)


def not_loadable_reason(module_path: str) -> str | None:
    """Why a worker would refuse ``module_path`` by name alone (rules 1 and 2), or ``None``."""
    if not _NAME_RE.match(module_path):
        return (
            f"{module_path!r} is not <module>.<function>: django.tasks tasks must be "
            "functions at the top level of a module"
        )
    module = module_path.rpartition(".")[0]
    if not module_allowed(module):
        return (
            f"module {module!r} is not part of an installed app nor listed in "
            "DJTASKS_IMPORTS; djtasks loads tasks from those modules only"
        )
    return None


def check_loadable(module_path: str) -> str | None:
    """Like :func:`not_loadable_reason`, but ``None`` while the app registry is
    still loading (the decorator runs at import time; ``enqueue()`` checks again)."""
    if not apps.apps_ready:
        return None
    return not_loadable_reason(module_path)


def load_task(module_path: str) -> Task:
    """Return the ``django.tasks.Task`` named ``module_path``.

    :raises TaskNotLoadable: saying which rule refused it; nothing outside
        the allowed modules is imported or looked up.
    """
    reason = not_loadable_reason(module_path)
    if reason:
        raise TaskNotLoadable(reason)
    module_name, _, attr = module_path.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # whatever the import raised, say so
            raise TaskNotLoadable(
                f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
            ) from exc
    obj = getattr(module, attr, None)
    if not isinstance(obj, Task):
        what = "nothing" if obj is None else f"a {type(obj).__name__}"
        raise TaskNotLoadable(f"{module_path!r} is {what}, not a django.tasks Task")
    if obj.module_path != module_path:
        raise TaskNotLoadable(
            f"{module_path!r} is the task {obj.module_path!r} under "
            "another name; tasks run under their own name only"
        )
    return obj
