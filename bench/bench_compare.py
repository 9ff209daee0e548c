#!/usr/bin/env python3
"""Comparison benchmark: ``compare --kernels host,5.10,6.1,6.12,7.2`` over the whole catalogue.

Runs the comparison exactly as a user does (``oom-harness compare``, a subprocess), once with
``-j 1`` (kernels one after another) and once with ``-j 2`` (two kernels at once, one QEMU each), and
prints both wall times and their ratio.  Target (issue "Fit the tools that run it"): ``-j 2`` at
most 2 min on 2 cores under TCG.  Boot snapshots are used as a user's second run would use them;
each configuration runs once first with ``--warm`` so both are measured with snapshots and images
in the cache (``--no-warm`` to skip that).  Each run's reports go to a temporary results folder,
deleted afterwards; the scenario counts (as expected / not / skipped per kernel) come from the runs'
own summaries.

    python bench/bench_compare.py [--kernels host,5.10,6.1,6.12,7.2] [--jobs 1,2] [--no-warm]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import Row, default_out, print_table, write_json  # noqa: E402

TARGET_S = 120.0
COUNTS = ("scenarios", "as_expected", "not_as_expected", "skipped")


def run_compare(kernels: str, jobs: int, scenarios: list[str]) -> dict[str, Any]:
    """One ``compare`` run: wall time, exit code and the per-kernel counts from its run summaries."""
    with tempfile.TemporaryDirectory(prefix="oomh-bench-compare-") as td:
        cmd = [sys.executable, "-m", "harness", "compare", "--kernels", kernels, "-j", str(jobs),
               "--results", td, "--format", "md", *scenarios]
        t0 = time.monotonic()
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - t0
        per_kernel: dict[str, dict[str, int]] = {}
        slowest: dict[str, tuple[float, str]] = {}  # the slowest scenario per kernel (TCG outliers)
        for summary in sorted(Path(td).glob("*/summary.json")):
            doc = json.loads(summary.read_text())
            env_file = summary.parent / "env.json"
            env = json.loads(env_file.read_text()) if env_file.exists() else {}
            label = env.get("kernel_label") or summary.parent.name
            per_kernel[label] = {k: int(doc.get(k, 0)) for k in COUNTS}
            rows = [json.loads(ln) for ln in (summary.parent / "verdicts.jsonl").read_text().splitlines() if ln]
            timed = [(r.get("duration_s") or 0.0, r["scenario"]) for r in rows]
            slowest[label] = max(timed) if timed else (0.0, "-")
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"bench_compare: compare -j {jobs} failed (exit {p.returncode}): {tail}")
    return {"jobs": jobs, "wall_s": round(wall, 1), "per_kernel": per_kernel,
            "slowest": {k: {"scenario": n, "s": round(t, 2)} for k, (t, n) in slowest.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="host,5.10,6.1,6.12,7.2")
    ap.add_argument("--jobs", default="1,2", help="comma-separated -j values to measure (default 1,2)")
    ap.add_argument("--no-warm", action="store_true", help="no warm-up run before the measured ones")
    ap.add_argument("--out", type=Path)
    ap.add_argument("scenarios", nargs="*", help="catalogue names (default: the whole catalogue)")
    args = ap.parse_args()
    jobs = [int(j) for j in args.jobs.split(",")]
    if not args.no_warm:
        print(f"warm-up: compare --kernels {args.kernels} -j {max(jobs)} (images, kernels, boot snapshots) ...",
              file=sys.stderr, flush=True)
        run_compare(args.kernels, max(jobs), args.scenarios)
    runs = []
    for j in jobs:
        print(f"measuring: compare --kernels {args.kernels} -j {j} ...", file=sys.stderr, flush=True)
        runs.append(run_compare(args.kernels, j, args.scenarios))
        print(f"  -j {j}: {runs[-1]['wall_s']} s", file=sys.stderr, flush=True)
    rows = []
    by_j = {r["jobs"]: r for r in runs}
    for r in runs:
        counts = ", ".join(f"{k} {v['as_expected']}/{v['scenarios']}" for k, v in r["per_kernel"].items())
        is_target = r["jobs"] == 2
        rows.append(Row(f"compare -j {r['jobs']}, wall", r["wall_s"], "s", f"<= {TARGET_S:.0f} s" if is_target else "",
                        (r["wall_s"] <= TARGET_S) if is_target else None, f"as expected: {counts}"))
        slow = ", ".join(f"{k} {v['scenario']} {v['s']} s" for k, v in r["slowest"].items())
        rows.append(Row(f"... slowest scenario per kernel (-j {r['jobs']})", max(
            (v["s"] for v in r["slowest"].values()), default=None), "s", "", None, slow))
    if 1 in by_j and len(by_j) > 1:
        for j, r in by_j.items():
            if j != 1:
                rows.append(Row(f"-j {j} / -j 1", round(r["wall_s"] / by_j[1]["wall_s"], 2), "x", "", None,
                                f"{by_j[1]['wall_s']} s -> {r['wall_s']} s"))
    print_table(f"compare --kernels {args.kernels} ({os.cpu_count()} CPUs)", rows)
    out = args.out or default_out("compare")
    write_json(out, "compare", rows, {"kernels": args.kernels, "jobs": jobs, "scenarios": args.scenarios},
               {"runs": runs})
    print(f"\nsaved {out}")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
