"""Summaries (median and spread of the runs) and the printed table."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric of a workload, its target and the best peer."""

    workload: str
    key: str
    label: str
    unit: str
    higher_is_better: bool = True
    target: float | None = None
    peers: str = ""  # issue 8's best peer figure, for context


ROWS = [
    Row("W1", "tps", "W1 enqueue, .delay() one per transaction", "tasks/s", True, 2500,
        "2,036 Celery+Redis+dcr; 1,271 django-tasks-db"),
    Row("bulk", "tps", "bulk enqueue, queue.enqueue of 1,000-row chunks", "tasks/s", True, 50000),
    Row("bulk_delay", "tps", "bulk enqueue, Task.bulk_delay of 1,000 calls", "tasks/s", True,
        50000),
    Row("enqueue4", "tps", "enqueue, 4 concurrent processes (total)", "tasks/s"),
    Row("enqueue4-nonotify", "tps", "  the same with NOTIFY suppressed", "tasks/s"),
    Row("W2", "steady_tps", "W2 drain, -c 2, steady state", "tasks/s", True, 10000,
        "4,812 pgqueuer; 1,215 Celery+Redis"),
    Row("W2", "wall_tps", "W2 drain incl. worker start-up", "tasks/s"),
    Row("W3", "p50_ms", "W3 enqueue→start latency p50", "ms", False, 2.5,
        "3.2 Celery+Redis; 5.4 procrastinate"),
    Row("W3", "p95_ms", "W3 enqueue→start latency p95", "ms", False, 5.0,
        "4.1 Celery+Redis; 6.6 procrastinate"),
    Row("W4", "steady_tps", "W4 drain with history, steady state", "tasks/s", True, None,
        "625 procrastinate; 596 django-tasks-db"),
    Row("W4", "admin_list_ms", "admin task list on W4's table", "ms", False, 300),
    Row("W4", "admin_failed_ms", "  filtered: state FAILURE", "ms", False, 300),
    Row("W4", "admin_pending_ms", "  filtered: state PENDING", "ms", False, 300),
    Row("W4", "admin_by_name_ms", "  filtered: task name", "ms", False, 300),
    Row("W4", "admin_search_id_ms", "  searched: a task id", "ms", False, 300),
    Row("realistic2", "steady_tps", "realistic task (1 ms CPU + INSERT), -c 2", "tasks/s"),
    Row("realistic8", "steady_tps", "realistic task (1 ms CPU + INSERT), -c 8", "tasks/s"),
    Row("memory", "parent_rss_mib", "worker RSS after the memory run (parent)", "MiB", False),
    Row("memory", "children_rss_mib", "worker RSS after the memory run (children, sum)", "MiB", False),
    Row("memory", "parent_rss_growth_mib", "  growth 5 % → 100 % (parent)", "MiB", False),
    Row("memory", "children_rss_growth_mib", "  growth 5 % → 100 % (children)", "MiB", False),
]  # fmt: skip


def summarize(values: list[float]) -> dict[str, Any]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return {}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "spread_pct": (max(values) - min(values)) / statistics.median(values) * 100
        if statistics.median(values)
        else 0.0,
        "values": values,
    }


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median/min/max of every numeric top-level metric over the valid runs
    (a run whose checks failed measured something else)."""
    good = [r["result"] for r in runs if r.get("ok") and not problems(r)]
    keys = {k for r in good for k, v in r.items() if isinstance(v, int | float)}
    return {k: summarize([r[k] for r in good if isinstance(r.get(k), int | float)]) for k in keys}


def derived(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios the targets are stated in: W4 vs W2, 4 enqueuers vs 1."""

    def median(workload: str, key: str) -> float | None:
        return results.get(workload, {}).get("summary", {}).get(key, {}).get("median")

    out: dict[str, Any] = {}
    w2, w4 = median("W2", "steady_tps"), median("W4", "steady_tps")
    if w2 and w4:
        out["W4_vs_W2"] = w4 / w2
    w1, e4 = median("W1", "tps"), median("enqueue4", "tps")
    if w1 and e4:
        out["enqueue4_vs_W1"] = e4 / w1
    quiet = median("enqueue4-nonotify", "tps")
    if e4 and quiet:
        out["enqueue4_notify_vs_none"] = e4 / quiet
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.2f}"
    if unit == "MiB":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def _verdict(row: Row, median: float, db: str = "postgres") -> str:
    if row.target is None or db != "postgres":
        return ""  # issue 8's targets are stated for PostgreSQL
    met = median >= row.target if row.higher_is_better else median <= row.target
    sign = "≥" if row.higher_is_better else "≤"
    return f"{sign} {_fmt(row.target, row.unit)} {'met' if met else 'NOT met'}"


def table(report: dict[str, Any]) -> str:
    lines = []
    for db, results in report["results"].items():
        lines.append("")
        lines.append(
            f"{db}  ({report['meta']['size']}, {report['meta']['runs']} run(s); "
            f"median, min-max, spread)"
        )
        lines.append(
            f"  {'metric':<50} {'median':>10} {'min-max':>21} {'spread':>7}  {'unit':<8} target"
        )
        for row in ROWS:
            entry = results.get(row.workload)
            if entry is None:
                continue
            s = entry["summary"].get(row.key)
            if not s:
                failed = [r.get("error", "?") for r in entry["runs"] if not r.get("ok")]
                lines.append(f"  {row.label:<50} {'FAILED':>10}  {failed[:1]}")
                continue
            span = f"{_fmt(s['min'], row.unit)}-{_fmt(s['max'], row.unit)}"
            lines.append(
                f"  {row.label:<50} {_fmt(s['median'], row.unit):>10} {span:>21} "
                f"{s['spread_pct']:>6.1f}%  {row.unit:<8} {_verdict(row, s['median'], db)}"
            )
        d = report["derived"].get(db, {})
        if "W4_vs_W2" in d:
            ok = "met" if d["W4_vs_W2"] >= 0.9 else "NOT met"
            lines.append(f"  {'W4 / W2 (target ≥ 0.90)':<50} {d['W4_vs_W2']:>10.2f}  {ok}")
        if "enqueue4_vs_W1" in d:
            lines.append(f"  {'4 enqueuers / 1 enqueuer (W1)':<50} {d['enqueue4_vs_W1']:>10.2f}")
        if "enqueue4_notify_vs_none" in d:
            lines.append(
                f"  {'4 enqueuers, with NOTIFY / without':<50} {d['enqueue4_notify_vs_none']:>10.2f}"
            )
        bad = [
            f"{w} run {r['run']}: {problem}"
            for w, entry in results.items()
            for r in entry["runs"]
            for problem in problems(r)
        ]
        for b in bad:
            lines.append(f"  !! {b}")
    return "\n".join(lines)


def problems(record: dict[str, Any]) -> list[str]:
    """Why a run does not count: it failed, or one of its checks did."""
    if not record.get("ok"):
        return [record.get("error", "failed")]
    out = []
    for key, value in record["result"].get("checks", {}).items():
        if value is False:
            out.append(f"check {key} failed: {record['result']['checks']}")
        elif key == "worker_exit_code" and value != 0:
            out.append(f"worker exited with {value}")
    return out


def markdown(report: dict[str, Any]) -> str:
    """The figures as a Markdown table (for docs/benchmarks.md)."""
    meta = report["meta"]
    out = []
    for db, results in report["results"].items():
        out.append(f"\n**{db}** ({meta['size']}, median of {meta['runs']} runs)\n")
        out.append("| workload | median | min-max | unit | target | best peer (issue 8) |")
        out.append("| --- | ---: | ---: | --- | --- | --- |")
        for row in ROWS:
            entry = results.get(row.workload)
            s = entry["summary"].get(row.key) if entry else None
            if not s:
                continue
            span = f"{_fmt(s['min'], row.unit)}-{_fmt(s['max'], row.unit)}"
            out.append(
                f"| {row.label.strip()} | {_fmt(s['median'], row.unit)} | {span} | {row.unit} "
                f"| {_verdict(row, s['median'], db)} | {row.peers if db == 'postgres' else ''} |"
            )
        d = report["derived"].get(db, {})
        if "W4_vs_W2" in d:
            out.append(f"| W4 / W2 | {d['W4_vs_W2']:.2f} | | ratio | ≥ 0.90 | |")
        if "enqueue4_vs_W1" in d:
            out.append(f"| 4 enqueuers / 1 (W1) | {d['enqueue4_vs_W1']:.2f} | | ratio | | |")
        if "enqueue4_notify_vs_none" in d:
            out.append(
                f"| 4 enqueuers, NOTIFY / none | {d['enqueue4_notify_vs_none']:.2f} | | ratio | | |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report [results.json] [--markdown]``: print a saved run."""
    import argparse
    import json
    from pathlib import Path

    p = argparse.ArgumentParser(prog="python -m benchmarks.report")
    p.add_argument("path", nargs="?", default="benchmarks/results/latest.json")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    data = json.loads(Path(args.path).read_text())
    print(markdown(data) if args.markdown else table(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
