"""The benchmark harness still works: ``python -m benchmarks --size tiny`` once.

Not a timed test: no figure is compared with anything. It runs every
workload at its tiny size on the database this suite runs on, and fails
when the harness does, or when a workload's own checks do (a task that ran
twice, a worker that died).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def _pg_url() -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"


@pytest.mark.slow
def test_harness_runs_every_workload_at_tiny_size(tmp_path: Path) -> None:
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "benchmarks", "--size", "tiny", "--runs", "1", "--json", str(out)]
    if on_postgres:
        # Own names (pid): other suites and a developer's benchmark may run on
        # the same server; its W4 template goes when it is done.
        argv += ["--db", "postgres", "--pg-url", _pg_url(), "--explain", "--drop-template",
                 "--db-name", f"djtasks_bench_smoke_{os.getpid()}"]  # fmt: skip
    else:
        argv += ["--db", "sqlite"]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    report = json.loads(out.read_text())
    db = "postgres" if on_postgres else "sqlite"
    results = report["results"][db]
    expected = {"W1", "W2", "W3", "bulk", "bulk_delay"}
    if on_postgres:
        expected |= {"W4", "realistic2", "realistic8", "memory", "enqueue4", "enqueue4-nonotify"}
        assert report["meta"]["explain"]["ok"], report["meta"]["explain"]
        statements = {
            p["statement"].split()[0] for p in report["meta"]["explain"]["result"]["plans"]
        }
        assert {"claim", "settle", "rescue"} <= statements
        assert report["meta"]["postgres"]["fsync"] in ("on", "off")
    assert set(results) == expected
    for name, entry in results.items():
        (run,) = entry["runs"]
        assert run["ok"], f"{name}: {run.get('traceback') or run.get('error')}"
        assert all(v is not False for v in run["result"].get("checks", {}).values()), (name, run)
    assert results["W2"]["runs"][0]["result"]["checks"]["exactly_once"]
    assert results["W2"]["summary"]["steady_tps"]["median"] > 0
    assert results["W3"]["summary"]["p50_ms"]["median"] > 0
    assert "W2 drain" in proc.stdout
