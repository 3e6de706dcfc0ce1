"""PostgreSQL: vacuum the task table far more often than the server's default.

Every task leaves dead row versions and dead entries in the index the claim
reads (a claim, a finish). The default threshold (20 % of the table) lets a
million-row history carry 200,000 of them; the claim then walks over them at
the head of its index on every call until a vacuum removes them. 1 % plus
1,000 rows keeps that debt small. ``docs/benchmarks.md`` has the figures.
Nothing is done on other databases.
"""

from django.db import migrations

TABLE = "djtasks_taskrecord"
OPTIONS = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_analyze_scale_factor": "0.02",
}


def set_options(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    options = ", ".join(f"{name} = {value}" for name, value in OPTIONS.items())
    schema_editor.execute(f"ALTER TABLE {TABLE} SET ({options})")


def reset_options(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE {TABLE} RESET ({', '.join(OPTIONS)})")


class Migration(migrations.Migration):
    dependencies = [
        ("djtasks", "0005_workflow_indexes"),
    ]

    operations = [
        migrations.RunPython(set_options, reset_options, elidable=False),
    ]
