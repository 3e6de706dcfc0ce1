"""The chaos suite's Django app: its side table and the tasks its workers run.

Installed by ``tests/settings.py`` so that worker subprocesses autodiscover
``tests.chaos.app.tasks``. It lives in a subpackage so that
``tests/chaos/bomb.py`` is *outside* every installed app (a forged row must
not get it imported).
"""
