"""The harness's own databases, and what the machine is.

Runs in the harness process, without Django: PostgreSQL is driven through
psycopg on the ``postgres`` maintenance database. Every database the harness
creates or drops is named ``djtasks_bench…``; any other name is refused, so
``djtasks`` and the test suite's databases are never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "djtasks_bench"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432"


@dataclass(frozen=True)
class Target:
    """A database a workload runs on: ``postgres:<name>`` or ``sqlite:<path>``."""

    vendor: str
    name: str

    @property
    def spec(self) -> str:
        return f"{self.vendor}:{self.name}"


def _check_name(name: str) -> None:
    if not name.startswith(PREFIX) or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to create or drop {name!r}: not a {PREFIX}… database")


class Postgres:
    """The server at ``url``: create, clone, drop and describe our databases."""

    def __init__(self, url: str = DEFAULT_PG_URL) -> None:
        self.url = url.rstrip("/")

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        parts = urlsplit(self.url)
        return psycopg.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or None,
            dbname=dbname,
            autocommit=True,
        )

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """A session advisory lock on the server, held for the block."""
        with self.connect() as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])

    def exists(self, name: str) -> bool:
        with self.connect() as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
                is not None
            )

    def create(self, name: str, template: str | None = None) -> None:
        _check_name(name)
        self.drop(name)
        with self.connect() as conn:
            sql = f'CREATE DATABASE "{name}"'
            if template:
                _check_name(template)
                sql += f' TEMPLATE "{template}"'
                if conn.info.server_version >= 150000:
                    # A file copy: the default (WAL_LOG) writes every block of
                    # a 1M-row table to the WAL, minutes instead of seconds.
                    sql += " STRATEGY FILE_COPY"
            conn.execute(sql)

    def drop(self, name: str) -> None:
        _check_name(name)
        with self.connect() as conn:
            force = " WITH (FORCE)" if conn.info.server_version >= 130000 else ""
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"{force}')

    def databases(self, like: str) -> list[str]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", [like]
            ).fetchall()
        return [r[0] for r in rows]

    def comment(self, name: str) -> dict[str, Any]:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                [name],
            ).fetchone()
        try:
            return json.loads(row[0]) if row and row[0] else {}
        except ValueError:
            return {}

    def set_comment(self, name: str, value: dict[str, Any]) -> None:
        _check_name(name)
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(json.dumps(value))
                )
            )

    def describe(self) -> dict[str, Any]:
        names = [
            "server_version", "fsync", "synchronous_commit", "full_page_writes",
            "wal_sync_method", "wal_level", "shared_buffers", "work_mem", "max_wal_size",
            "checkpoint_timeout", "autovacuum", "max_connections", "jit",
        ]  # fmt: skip
        with self.connect() as conn:
            out = {n: conn.execute(f"SHOW {n}").fetchone()[0] for n in names}
        return out


def template_name(base: str, size: str, finished: int) -> str:
    """The W4 template's name: it changes when the schema does (any migration
    of djtasks or of the benchmarks), so a stale history is never reused."""
    digest = hashlib.sha1(usedforsecurity=False)
    for folder in ("djtasks/migrations", "benchmarks/migrations"):
        for path in sorted((ROOT / folder).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    digest.update(str(finished).encode())
    return f"{base}_tpl_{size}_h{digest.hexdigest()[:10]}"


def django_env(target: Target, pg_url: str, settings: dict[str, Any]) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "DJTASKS_BENCH_DATABASE": target.spec,
        "DJTASKS_BENCH_PG_URL": pg_url,
        "DJTASKS_BENCH_SETTINGS": json.dumps(settings),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    env.pop("DATABASE_URL", None)  # only DJTASKS_BENCH_DATABASE chooses the database
    return env


def migrate(target: Target, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


# -- the machine ---------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg": os.getloadavg(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    for module in ("django", "psycopg"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    return info


def code_version() -> dict[str, Any]:
    """Which library code was measured: the commit, the files changed since,
    and a hash of the working tree's ``djtasks/`` (the lead edits it live)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for path in sorted((ROOT / "djtasks").rglob("*")):
        if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    out: dict[str, Any] = {"djtasks_tree_sha1": digest.hexdigest()[:12]}
    try:
        out["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "djtasks"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        out["djtasks_uncommitted"] = [line[3:] for line in changed if line.strip()]
    except (OSError, subprocess.CalledProcessError):
        pass
    return out
