from __future__ import annotations

import os

from django.apps import AppConfig


class ChaosConfig(AppConfig):
    """Tasks and the side table of the chaos suite (``tests/chaos``)."""

    name = "tests.chaos.app"
    label = "chaos"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A worker subprocess started with DJTASKS_CHAOS_FAULTS gets faults
        # injected into its queue writes (tests/chaos/faults.py).
        if os.environ.get("DJTASKS_CHAOS_FAULTS"):
            from tests.chaos import faults

            faults.install(os.environ["DJTASKS_CHAOS_FAULTS"])
