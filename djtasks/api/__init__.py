"""The JSON HTTP API for operators, and the Prometheus metrics.

Mounted by ``include("djtasks.urls")`` beside the status views (see
:mod:`djtasks.api.urls` for the routes and :mod:`djtasks.api.openapi` for
their description). Everything it changes goes through the same functions as
the admin and ``taskctl``: :mod:`djtasks.queue`, :mod:`djtasks.control`.

- :mod:`.auth`: who may call it (staff sessions, ``DJTASKS_API_TOKENS``), the
  per-route permission, CSRF for sessions, JSON errors;
- :mod:`.reads`: the read queries, each bounded by an index;
- :mod:`.pagination`: keyset pages of the task list;
- :mod:`.views`: the routes;
- :mod:`.metrics`: ``GET metrics`` in Prometheus's text format.
"""
