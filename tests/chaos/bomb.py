"""A module with a side effect on import: the proof that a forged row got it imported.

It is outside every installed app (``tests.chaos`` is a package, the app is
``tests.chaos.app``). Importing it creates the file named by
``DJTASKS_CHAOS_BOMB``; a forged task row naming ``tests.chaos.bomb.detonate``
must end FAILURE without that file ever appearing.
"""

from __future__ import annotations

import os
from pathlib import Path

_marker = os.environ.get("DJTASKS_CHAOS_BOMB")
if _marker:
    Path(_marker).write_text(f"imported by pid {os.getpid()}\n")


def detonate(*args: object, **kwargs: object) -> str:
    if _marker:
        Path(_marker + ".ran").write_text("ran\n")
    return "boom"
