"""Arguments that must not be shown: ``@task(sensitive=...)`` and ``argsrepr``/``kwargsrepr``.

A call of a task declared ``@task(sensitive=("card_number",))``, or a call
given ``apply_async(argsrepr=..., kwargsrepr=...)`` (as in Celery), stores in
its headers the text to show in place of its arguments. The admin (task
list, task page, search), the HTTP API and anything else that shows
arguments show that text and never decode the payload; the worker still
runs the task with the real arguments. Logs never carry arguments at all.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

#: Header keys of the texts shown in place of the arguments.
ARGSREPR, KWARGSREPR = "argsrepr", "kwargsrepr"
#: Longest text kept (a longer repr is cut, with an ellipsis).
MAX_REPR = 1024


class _Masked:
    def __repr__(self) -> str:
        return "'***'"


MASKED = _Masked()


def text(value: Any) -> str:
    """``repr(value)``, cut to :data:`MAX_REPR` characters."""
    try:
        shown = repr(value)
    except Exception:  # a broken __repr__ must not fail the call
        shown = f"<{type(value).__name__}>"
    return text_of(shown)


def text_of(shown: str) -> str:
    return shown if len(shown) <= MAX_REPR else shown[: MAX_REPR - 1] + "…"


def masked(
    args: Sequence[Any],
    kwargs: dict[str, Any],
    positional: Sequence[str],
    sensitive: Collection[str],
) -> tuple[str, str]:
    """``(argsrepr, kwargsrepr)`` of a call with its ``sensitive`` parameters masked.

    ``positional`` names the function's positional parameters, in order, so a
    sensitive parameter passed by position is masked too.
    """
    shown_args = [
        MASKED if i < len(positional) and positional[i] in sensitive else a
        for i, a in enumerate(args)
    ]
    shown_kwargs = {k: MASKED if k in sensitive else v for k, v in kwargs.items()}
    return text(shown_args), text(shown_kwargs)


def shown(headers: Any) -> tuple[str, str] | None:
    """``(argsrepr, kwargsrepr)`` to show instead of a row's arguments, or ``None``
    if its arguments may be shown."""
    if not isinstance(headers, dict) or (ARGSREPR not in headers and KWARGSREPR not in headers):
        return None
    return str(headers.get(ARGSREPR, "")), str(headers.get(KWARGSREPR, ""))
