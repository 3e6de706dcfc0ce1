"""docs/deployment.md: the units start real commands, and the SQL runs.

The systemd units, ``systemctl`` and PgBouncer cannot run here; what can
break silently is checked: the units' ``ExecStart`` lines parse with the
commands' own parsers, the autovacuum SQL and the migration that carries it
agree and run on PostgreSQL, and the Python snippets run.
"""

from __future__ import annotations

import ast
import configparser
import re
import shlex

import pytest
from django.db import connection

from tests.docs import markdown
from tests.docs.command_parsers import parser_for

PAGE = markdown.read("deployment.md")


def _blocks(lang: str) -> list[markdown.Block]:
    return [b for b in PAGE.blocks if b.lang == lang]


def test_the_units_run_real_commands() -> None:
    units = _blocks("ini")
    assert len(units) == 2
    for unit in units:
        config = configparser.ConfigParser(interpolation=None, strict=False)
        config.read_string(unit.text)
        service = config["Service"]
        argv = shlex.split(service["ExecStart"])
        assert argv[1] == "manage.py", unit.where
        command, *options = argv[2:]
        # systemd turns %i into the instance and %% into %; the worker expands %h.
        options = [o.replace("%i", "1").replace("%%", "%") for o in options]
        parser_for(command).parse_args(options)
        assert service["KillSignal"] == "SIGTERM"
        assert int(service["TimeoutStopSec"]) > 0


def _alter_table() -> str:
    [block] = [b for b in _blocks("sql") if b.text.startswith("ALTER TABLE")]
    return block.text


def test_the_migration_sets_what_the_sql_sets() -> None:
    options = re.findall(r"(autovacuum_\w+ = \d+)", _alter_table())
    [migration] = [b for b in _blocks("python") if "RunSQL" in b.text]
    assigned = next(
        n
        for n in ast.parse(migration.text).body
        if isinstance(n, ast.Assign) and n.targets[0].id == "AUTOVACUUM"
    )
    assert ast.literal_eval(assigned.value) == options


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_autovacuum_sql_runs_on_postgresql() -> None:
    migration = next(b for b in _blocks("python") if "RunSQL" in b.text)
    namespace: dict = {}
    exec(compile(migration.text, migration.where, "exec"), namespace)  # noqa: S102 - the page's code
    operation = namespace["Migration"].operations[0]
    with connection.cursor() as cursor:
        cursor.execute(_alter_table())
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'djtasks_taskrecord'")
        assert "autovacuum_vacuum_threshold=10000" in cursor.fetchone()[0]
        cursor.execute(operation.reverse_sql)
        cursor.execute(operation.sql)
        cursor.execute(operation.reverse_sql)
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'djtasks_taskrecord'")
        assert cursor.fetchone()[0] is None
        [check] = [b for b in _blocks("sql") if "pg_stat_user_tables" in b.text]
        cursor.execute(check.text)
        assert cursor.fetchone() is not None


@pytest.mark.django_db
def test_the_python_snippets_run() -> None:
    for block in _blocks("python"):
        compile(block.text, block.where, "exec")
    [query] = [b for b in _blocks("python") if "UNREADY_STATES" in b.text]
    exec(compile(query.text, query.where, "exec"), {})  # noqa: S102 - the page's code
