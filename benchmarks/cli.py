"""``python -m benchmarks``: create the databases, run the workloads, report.

The harness process never imports Django: each workload runs in a fresh
driver process (:mod:`benchmarks.driver`) pointed at the right database, and
starts its own ``manage.py taskworker``. Runs go round-robin (run 1 of every
workload, then run 2, …) so a passing load spike on this shared machine
lands in one run of each workload rather than in all runs of one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import databases, report
from .databases import ROOT, Postgres, Target

#: Which workloads run on which database by default (issue 8: SQLite is the
#: dev setup; W4 needs PostgreSQL's template databases).
DEFAULT_WORKLOADS = {
    "postgres": [
        "W1", "W2", "W3", "W4", "realistic2", "realistic8", "memory", "enqueue4", "bulk",
        "bulk_delay",
    ],
    "sqlite": ["W1", "W2", "W3", "bulk", "bulk_delay"],
}  # fmt: skip
ALL_WORKLOADS = DEFAULT_WORKLOADS["postgres"]
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="djtasks benchmarks: issue 8's W1-W4 and extras, issue 3's latency and "
        "concurrent enqueuers. See docs/benchmarks.md.",
    )
    p.add_argument("--db", choices=["postgres", "sqlite", "both"], default="both")
    p.add_argument("--size", choices=["tiny", "full"], default="full")
    p.add_argument("--runs", type=int, default=3, help="runs of each workload (default 3)")
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated workloads (default: all): {','.join(ALL_WORKLOADS)}",
    )
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("DJTASKS_BENCH_PG_URL", databases.DEFAULT_PG_URL),
        help="PostgreSQL server (no database name); default %(default)s",
    )
    p.add_argument(
        "--db-name",
        default=databases.PREFIX,
        help=f"name (and prefix) of the databases to create; must start with {databases.PREFIX}",
    )
    p.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    p.add_argument("--rebuild-template", action="store_true", help="rebuild W4's history")
    p.add_argument("--drop-template", action="store_true", help="drop W4's template when done (CI)")
    p.add_argument(
        "--w4-pending",
        choices=["future-eta", "other-queue", "same-queue"],
        default="future-eta",
        help="where W4's pending rows are (default: due tomorrow, in the worker's queue)",
    )
    p.add_argument(
        "--history",
        choices=["direct", "worker"],
        default="direct",
        help="how W4's finished rows are made: the worker's claim/settle statements driven "
        "in-process (default, minutes) or a real taskworker (as slow as the worker)",
    )
    p.add_argument(
        "--w2-verify",
        choices=["journal", "table", "rows"],
        default="journal",
        help="W2's exactly-once check: a journal file per process (default; a few µs per "
        "task), an INSERT into a UNIQUE column (a commit per task), or only the rows' "
        "attempt column (the plain no-op)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a Django setting for every process, e.g. DJTASKS_PREFETCH_MULTIPLIER=8",
    )
    p.add_argument("--worker-loglevel", default="WARNING", help="taskworker -l (default WARNING)")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="run the workers under py-spy (raw flame data in DIR); rates are then not comparable",
    )
    p.add_argument(
        "--explain", action="store_true", help="also print EXPLAIN of the hot statements (W4 table)"
    )
    args = p.parse_args(argv)
    if not args.db_name.startswith(databases.PREFIX):
        p.error(f"--db-name must start with {databases.PREFIX}")
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    by_lower = {w.lower(): w for w in ALL_WORKLOADS}
    unknown = [w for w in wanted if w.lower() not in by_lower]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; known: {', '.join(ALL_WORKLOADS)}")
    args.only = [by_lower[w.lower()] for w in wanted]
    settings: dict[str, Any] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set takes NAME=VALUE, not {item!r}")
        try:
            settings[name] = json.loads(value)
        except ValueError:
            settings[name] = value
    args.settings = settings
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def py_spy() -> str:
    """py-spy (``pip install py-spy``; not a dependency): on PATH or beside Python."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return found


def notify_switch() -> str | None:
    """The library's setting that turns NOTIFY off, if it has one."""
    from djtasks.conf import DEFAULTS

    names = [n for n, v in DEFAULTS.items() if "NOTIFY" in n and isinstance(v, bool)]
    return f"DJTASKS_{names[0]}" if len(names) == 1 else None


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pg = Postgres(args.pg_url)
        self.work = Path(tempfile.mkdtemp(prefix="djtasks-bench-"))
        self.targets: dict[str, Target] = {}
        self.template: str | None = None
        self.failed = False
        # Working databases carry this process's id: two harnesses on one
        # server (the lead measuring while CI runs the smoke test) never drop
        # each other's. Only W4's template is shared, under a lock.
        self.tag = os.getpid()
        self.sweep_orphans()

    def name(self, kind: str) -> str:
        """``<db-name>_<kind><pid>``: run, w4 or explain."""
        return f"{self.args.db_name}_{kind}{self.tag}"

    def sweep_orphans(self) -> None:
        """Drop working databases left by harnesses that were killed (their
        process is gone); only when the server is this machine."""
        from urllib.parse import urlsplit

        if self.args.db == "sqlite" or urlsplit(self.args.pg_url).hostname not in (
            "127.0.0.1",
            "localhost",
            "::1",
        ):
            return
        pattern = re.escape(self.args.db_name) + r"_(?:run|w4|explain)(\d+)"
        try:
            names = self.pg.databases(self.args.db_name + "%")
        except Exception:  # no server: the run reports it later
            return
        for name in names:
            m = re.fullmatch(pattern, name)
            if m and not Path(f"/proc/{m.group(1)}").exists():
                self.log(f"dropping {name}, left by a harness that is gone")
                self.pg.drop(name)

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    # -- databases ------------------------------------------------------------

    def env(
        self,
        target: Target,
        extra: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> dict[str, str]:
        env = databases.django_env(
            target, self.args.pg_url, {**self.args.settings, **(extra or {})}
        )
        env["DJTASKS_BENCH_W4_PENDING"] = self.args.w4_pending
        env["DJTASKS_BENCH_W2_VERIFY"] = self.args.w2_verify
        env["DJTASKS_BENCH_HISTORY"] = self.args.history
        env.update(extra_env or {})
        return env

    def prepare(self, db: str) -> Target:
        begin = time.monotonic()
        if db == "postgres":
            target = Target("postgres", self.name("run"))
            self.pg.create(target.name)
        else:
            target = Target("sqlite", str(self.work / "bench.sqlite3"))
        databases.migrate(target, self.env(target))
        self.targets[db] = target
        self.log(
            f"[{db}] database {target.name} created and migrated ({time.monotonic() - begin:.1f}s)"
        )
        return target

    def w4_target(self, run: int) -> Target:
        """A fresh copy of the history template for each W4 run."""
        assert self.template is not None
        target = Target("postgres", self.name("w4"))
        self.pg.create(target.name, template=self.template)
        return target

    def ensure_template(self) -> None:
        """Build W4's template unless a complete one exists. Under an advisory
        lock: a second harness waits for the first one's build, then reuses it."""
        with self.pg.lock(f"{self.args.db_name}_tpl"):
            self._ensure_template()

    def _ensure_template(self) -> None:
        from .sizes import SIZES

        size = SIZES[self.args.size]
        name = databases.template_name(
            self.args.db_name, f"{self.args.size}_{self.args.history}", size.w4_finished
        )
        self.template = name
        meta = self.pg.comment(name) if self.pg.exists(name) else {}
        if meta.get("complete") and not self.args.rebuild_template:
            self.log(
                f"W4 history: reusing template {name} ({meta.get('finished_rows'):,} rows made "
                f"by {meta.get('history')}, built {meta.get('built_at')})"
            )
            return
        # One history per size: drop stale ones (another schema version).
        base = name.rsplit("_h", 1)[0]
        stale = [
            n
            for n in self.pg.databases(base + "%")
            if re.fullmatch(re.escape(base) + r"_h[0-9a-f]{10}", n)
        ]
        for old in stale:
            self.log(f"W4 history: dropping stale template {old}")
            self.pg.drop(old)
        self.log(
            f"W4 history: building {name}: {size.w4_finished:,} finished rows made through the "
            f"queue's write path ({self.args.history}; once, kept as a template)"
        )
        target = Target("postgres", name)
        self.pg.create(name)
        databases.migrate(target, self.env(target))
        record = self.drive(target, "build-history", 1)
        if not record.get("ok"):
            self.pg.drop(name)
            raise SystemExit(f"could not build W4's history: {record.get('error')}")
        self.pg.set_comment(name, {
            "complete": True, "finished_rows": size.w4_finished,
            "history": record["result"]["history"],
            "vacuum": record["result"]["vacuum"],
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(record["seconds"]), "code": databases.code_version(),
        })  # fmt: skip
        self.log(f"W4 history: built in {record['seconds']:.0f}s")

    # -- running --------------------------------------------------------------

    def drive(
        self,
        target: Target,
        workload: str,
        run: int,
        extra: dict[str, Any] | None = None,
        label: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        label = label or workload
        folder = self.work / f"{target.vendor}-{label}-{run}"
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / "result.json"
        env = self.env(target, extra, extra_env)
        if self.args.profile and workload not in ("build-history",):
            self.args.profile.mkdir(parents=True, exist_ok=True)
            flame = self.args.profile.resolve() / f"{target.vendor}-{label}-{run}.txt"
            env["DJTASKS_BENCH_WORKER_PREFIX"] = (
                f"{py_spy()} record --format raw --subprocesses --rate 250 --output {flame} --"
            )
        argv = [
            sys.executable, "-m", "benchmarks.driver", workload, "--size", self.args.size,
            "--out", str(out), "--workdir", str(folder), "--run", str(run),
            "--loglevel", self.args.worker_loglevel,
        ]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=4 * 3600)
        except BaseException:
            proc.send_signal(signal.SIGTERM)  # the driver reaps its workers
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        if out.exists():
            record = json.loads(out.read_text())
        else:
            record = {
                "workload": workload,
                "run": run,
                "ok": False,
                "error": f"driver exited with {proc.returncode} and wrote nothing",
            }
        return record

    def run(self) -> dict[str, Any]:
        args = self.args
        dbs = ["postgres", "sqlite"] if args.db == "both" else [args.db]
        plan = {
            db: [w for w in DEFAULT_WORKLOADS[db] if not args.only or w in args.only] for db in dbs
        }
        switch = notify_switch()
        started = dt.datetime.now(dt.UTC)
        meta: dict[str, Any] = {
            "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
            "started": started.isoformat(timespec="seconds"),
            "size": args.size,
            "runs": args.runs,
            "settings": args.settings,
            "worker_loglevel": args.worker_loglevel,
            "w4_pending": args.w4_pending,
            "w2_verify": args.w2_verify,
            "notify_switch": switch,
            "machine": databases.machine(),
            "code": databases.code_version(),
            "profiled": bool(args.profile),
        }
        from .sizes import SIZES

        meta["sizes"] = SIZES[args.size].as_dict()
        if "postgres" in dbs:
            meta["postgres"] = self.pg.describe()
        if "sqlite" in dbs:
            meta["sqlite_options"] = "WAL, synchronous=NORMAL, IMMEDIATE transactions"
        results: dict[str, dict[str, Any]] = {db: {} for db in dbs}
        try:
            for db in dbs:
                if plan[db]:
                    self.prepare(db)
            if "W4" in plan.get("postgres", []):
                self.ensure_template()
            for run in range(1, args.runs + 1):
                for db in dbs:
                    for workload in plan[db]:
                        if workload == "memory" and run > 1:
                            continue  # one long run: its samples are the measurement
                        self.one(db, workload, run, results[db])
                        if workload == "enqueue4" and db == "postgres":
                            # Issue 3: the same without NOTIFY, to see what it costs.
                            self.one(
                                db,
                                workload,
                                run,
                                results[db],
                                {switch: False} if switch else None,
                                "enqueue4-nonotify",
                                {"DJTASKS_BENCH_NO_NOTIFY": "1"},
                            )
            if args.explain and "postgres" in dbs:
                from . import explain

                self.log("[postgres] EXPLAIN of the hot statements on W4's table …")
                meta["explain"] = explain.run(self)
        finally:
            self.cleanup()
        for db_results in results.values():
            for entry in db_results.values():
                entry["summary"] = report.summarize_runs(entry["runs"])
        meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        meta["loadavg_end"] = os.getloadavg()
        out = {
            "meta": meta,
            "results": results,
            "derived": {db: report.derived(r) for db, r in results.items()},
        }
        self.failed = any(
            report.problems(r) for res in results.values() for e in res.values() for r in e["runs"]
        )
        return out

    def one(
        self,
        db: str,
        workload: str,
        run: int,
        results: dict[str, Any],
        extra: dict[str, Any] | None = None,
        label: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        label = label or workload
        target = self.w4_target(run) if workload == "W4" else self.targets[db]
        self.log(f"[{db}] {label} run {run}/{self.args.runs} …")
        record = self.drive(target, workload, run, extra, label, extra_env)
        results.setdefault(label, {"runs": []})["runs"].append(record)
        issues = report.problems(record)
        if issues:
            self.log(f"[{db}] {label} run {run}: " + "; ".join(issues))
        else:
            r = record["result"]
            headline = next(
                (
                    f"{k}={r[k]:,.2f}"
                    for k in ("steady_tps", "tps", "p50_ms", "parent_rss_mib")
                    if k in r
                ),
                "",
            )
            self.log(
                f"[{db}] {label} run {run}: {headline} ({record['seconds']:.1f}s, "
                f"load {record['loadavg_after'][0]:.2f})"
            )
        if workload == "W4" and not self.args.keep:
            self.pg.drop(target.name)

    def cleanup(self) -> None:
        if not self.args.keep:
            for db, target in self.targets.items():
                if db == "postgres":
                    self.pg.drop(target.name)
            if self.pg_used():
                self.pg.drop(self.name("w4"))
        if self.args.drop_template and self.template:
            self.pg.drop(self.template)
        shutil.rmtree(self.work, ignore_errors=True)

    def pg_used(self) -> bool:
        return "postgres" in self.targets or self.template is not None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness = Harness(args)
    begin = time.time()
    result = harness.run()
    result["meta"]["seconds"] = round(time.time() - begin, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    print(report.table(result))
    m = result["meta"]["machine"]
    print(
        f"\nmachine: {m.get('cpu_model')}, {m['cpu_count']} CPUs, {m.get('memory_gib')} GiB; "
        f"load average at start {m['loadavg'][0]:.2f}, at end {result['meta']['loadavg_end'][0]:.2f}"
    )
    if "postgres" in result["meta"]:
        pg = result["meta"]["postgres"]
        print(
            f"PostgreSQL {pg['server_version']}: fsync={pg['fsync']}, "
            f"synchronous_commit={pg['synchronous_commit']}, "
            f"full_page_writes={pg['full_page_writes']}, autovacuum={pg['autovacuum']}, "
            f"shared_buffers={pg['shared_buffers']}"
        )
    print(f"JSON: {args.json}  ({result['meta']['seconds']:.0f}s)")
    if "explain" in result["meta"]:
        from . import explain

        record = result["meta"]["explain"]
        if record.get("ok"):
            print("\n" + explain.render(record["result"], args.size))
        else:
            print(f"\nexplain failed: {record.get('error')}")
            harness.failed = True
    return 1 if harness.failed else 0
