"""Parser benchmark: throughput and peak memory of ``parse_file`` on large generated kernel logs.

For each size (``--size-mb`` / 4, / 2, x 1; 25, 50 and 100 MB by default) a deterministic log is
generated into a temporary file (about 1 % of its lines are complete OOM reports, the rest
ordinary kernel noise, see ``bench/_util.py``), then parsed in a *fresh* Python subprocess with
``parse_file(path, keep_lines=False)``:

* ``throughput``: file bytes / wall time, median of ``--repeats`` parses (MB = 10^6 bytes); and
  file bytes / the best run's process CPU time, which stays meaningful when other jobs share the
  cores (wall time then measures the queue, not the parser);
* ``max RSS``: the subprocess's peak resident set after those parses (``VmHWM`` from
  ``/proc/self/status``; ``resource.getrusage`` ``ru_maxrss`` is recorded too, but on Linux it
  inherits the parent's peak across fork+exec), and its growth over the RSS the process had after
  importing the parser (the parser's own footprint);
* ``tracemalloc peak``: one extra, untimed parse under ``tracemalloc``: the largest amount of
  Python memory live at once (independent of allocator and page-cache noise).

Every log is parsed twice: with the repair stage (``parse``'s default: pasted reports rejoined,
quotes stripped, see ``harness/core/repair.py``) and without it (``repair=False``, the bare
parser), so the cost of the repair stage is visible.  The target applies with the repair stage in.

Streaming means the peaks must not grow with the log's size.  The number of events found must
equal the number of reports injected (the benchmark fails loudly otherwise).  The same is then
measured once for the ``/dev/kmsg`` record form (``6,123,456789,-;msg``) and for the
journal/syslog form (``Nov 25 14:10:55 host kernel: msg``), and, for information, on a log made
of nothing but OOM reports (every line on the parser's slow path).

    .venv/bin/python bench/bench_parser.py [--size-mb 100] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import FORMS, MB, MIB, Row, default_out, generate_log, print_table, write_json  # noqa: E402

NAME = "parser"
TARGET_MBPS = 100.0  # with the repair stage in
# Peak memory may not grow with the log: the largest log's peak RSS growth over the import
# baseline may exceed the smallest's by at most this (allocator noise), and the tracemalloc peak
# by at most 10 %.
RSS_SLACK_MIB = 4.0
TRACEMALLOC_SLACK_MIB = 2.0  # the parser reads 1 Mi-character chunks; two of them is noise


# --------------------------------------------------------------------------------------------
# worker: runs in a fresh interpreter so its max RSS belongs to this one log only
# --------------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (Linux), in KiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _worker(path: str, repeats: int, trace: bool, repair: bool = True) -> None:
    import resource
    import statistics
    import time
    import tracemalloc

    from harness.core.parser import parse_file

    def run() -> int:
        n = 0
        for _ev in parse_file(path, keep_lines=False, repair=repair):
            n += 1
        return n

    # ru_maxrss survives fork+exec on Linux (the kernel carries the pre-exec peak over), so a
    # child's ru_maxrss starts at its parent's peak; VmHWM is the peak of this process's own
    # address space.  Both are reported; the verdict uses VmHWM where /proc exists.
    base_kib = _proc_status_kib("VmRSS")
    times, cpu, counts = [], [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        counts.append(run())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    hwm_kib = _proc_status_kib("VmHWM")
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if base_kib is None or hwm_kib is None:
        base_kib, hwm_kib = 0, maxrss_kib
    tm_peak = None
    if trace:
        tracemalloc.start()
        run()
        tm_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(
        json.dumps(
            {
                "times": times,
                "median": statistics.median(times),
                "cpu_times": cpu,
                "cpu_min": min(cpu),
                "counts": counts,
                "rss_base_kib": base_kib,
                "rss_peak_kib": hwm_kib,
                "ru_maxrss_kib": maxrss_kib,
                "tracemalloc_peak": tm_peak,
            }
        )
    )


def run_worker(path: Path, repeats: int, trace: bool, repair: bool = True) -> dict:
    cmd = [sys.executable, __file__, "--_worker", str(path), "--repeats", str(repeats)]
    if trace:
        cmd.append("--_trace")
    if not repair:
        cmd.append("--_no_repair")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------


def measure(
    tmp: Path, size_mb: float, form: str, repeats: int, trace: bool, oom_fraction: float = 0.01, min_gap: int = 1500
) -> dict:
    path = tmp / f"bench-{form}-{size_mb:g}MB.log"
    gen = generate_log(path, int(size_mb * MB), form=form, oom_fraction=oom_fraction, min_gap=min_gap)
    try:
        res = run_worker(path, repeats, trace)
        plain = run_worker(path, repeats, False, repair=False)
    finally:
        path.unlink(missing_ok=True)
    bad = [c for c in res["counts"] + plain["counts"] if c != gen.reports]
    if bad:
        raise AssertionError(f"{form} {size_mb:g} MB: parser found {bad[0]} events, {gen.reports} were injected")
    res["no_repair"] = {
        "median": plain["median"],
        "mb_per_s": gen.bytes / MB / plain["median"],
        "cpu_mb_per_s": gen.bytes / MB / plain["cpu_min"],
        "rss_peak_kib": plain["rss_peak_kib"],
    }
    res["cpu_mb_per_s"] = gen.bytes / MB / res["cpu_min"]
    res.update(
        form=form,
        size_mb=size_mb,
        bytes=gen.bytes,
        lines=gen.lines,
        oom_lines=gen.oom_lines,
        reports=gen.reports,
        report_kinds=gen.kinds,
        generate_seconds=gen.seconds,
        mb_per_s=gen.bytes / MB / res["median"],
        mb_per_s_runs=[gen.bytes / MB / t for t in res["times"]],
        rss_growth_mib=(res["rss_peak_kib"] - res["rss_base_kib"]) / 1024,
    )
    print(
        f"  {form:<7} {size_mb:>6g} MB: {res['mb_per_s']:6.1f} MB/s (runs "
        + ", ".join(f"{x:.1f}" for x in res["mb_per_s_runs"])
        + f"; CPU {res['cpu_mb_per_s']:.1f}); without repair {res['no_repair']['mb_per_s']:.1f} MB/s"
        + f" (CPU {res['no_repair']['cpu_mb_per_s']:.1f})"
        + f", max RSS {res['rss_peak_kib'] / 1024:.1f} MiB (+{res['rss_growth_mib']:.1f} over import), "
        f"{gen.reports} reports / {gen.lines:,} lines ({gen.oom_lines / gen.lines:.2%} OOM)",
        flush=True,
    )
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=100.0, help="largest log size (default 100)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 10 MB largest log")
    ap.add_argument("--repeats", type=int, default=3, help="timed parses per log (median is reported)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default results/bench/parser-<time>.json)")
    ap.add_argument("--tmpdir", default=None, help="where to generate the logs (default: system temp dir)")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_trace", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_no_repair", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        _worker(args._worker, args.repeats, args._trace, repair=not args._no_repair)
        return 0

    size = 10.0 if args.quick else args.size_mb
    sizes = [size / 4, size / 2, size]
    runs: list[dict] = []
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="oom-bench-", dir=args.tmpdir) as td:
        tmp = Path(td)
        print(f"parser benchmark: sizes {', '.join(f'{s:g}' for s in sizes)} MB, {args.repeats} runs each")
        scaling = [measure(tmp, s, "dmesg", args.repeats, True) for s in sizes]
        runs += scaling
        forms = [measure(tmp, size, f, args.repeats, False) for f in FORMS if f != "dmesg"]
        runs += forms
        dense = measure(tmp, min(size, 10.0), "dmesg", args.repeats, False, oom_fraction=1.0, min_gap=0)
        dense["form"] = "dmesg, OOM reports only"
        runs.append(dense)

    for r in scaling + forms:
        rows.append(
            Row(
                f"throughput {r['form']} {r['size_mb']:g} MB, with repair",
                r["mb_per_s"],
                "MB/s",
                f">= {TARGET_MBPS:g}",
                r["mb_per_s"] >= TARGET_MBPS,
                f"{r['reports']} reports found of {r['reports']} injected",
            )
        )
        rows.append(
            Row(
                f"throughput {r['form']} {r['size_mb']:g} MB, without repair",
                r["no_repair"]["mb_per_s"],
                "MB/s",
                "",
                None,
                f"repair stage costs {1 - r['mb_per_s'] / r['no_repair']['mb_per_s']:.0%}",
            )
        )
        rows.append(
            Row(
                f"CPU throughput {r['form']} {r['size_mb']:g} MB, with / without repair",
                r["cpu_mb_per_s"],
                "MB/s",
                "",
                None,
                f"{r['no_repair']['cpu_mb_per_s']:.1f} MB/s without; bytes / best process CPU time "
                "(what a busy machine's wall time hides)",
            )
        )
    rows.append(
        Row(
            f"throughput OOM-only {dense['size_mb']:g} MB",
            dense["mb_per_s"],
            "MB/s",
            "",
            None,
            f"worst case: every line a report line ({dense['reports']} reports); "
            f"{dense['no_repair']['mb_per_s']:.1f} MB/s without repair",
        )
    )
    for r in scaling:
        rows.append(
            Row(
                f"max RSS dmesg {r['size_mb']:g} MB",
                r["rss_peak_kib"] / 1024,
                "MiB",
                "",
                None,
                f"+{r['rss_growth_mib']:.1f} MiB over the {r['rss_base_kib'] / 1024:.1f} MiB after import",
            )
        )
    for r in scaling:
        rows.append(
            Row(
                f"tracemalloc peak dmesg {r['size_mb']:g} MB",
                r["tracemalloc_peak"] / MIB,
                "MiB",
                "",
                None,
                "Python memory live at once during one parse",
            )
        )
    small, large = scaling[0], scaling[-1]
    growth = large["rss_growth_mib"] - small["rss_growth_mib"]
    rows.append(
        Row(
            f"max RSS growth {small['size_mb']:g}->{large['size_mb']:g} MB",
            growth,
            "MiB",
            f"<= {RSS_SLACK_MIB:g}",
            growth <= RSS_SLACK_MIB,
            "0 = peak independent of log size",
        )
    )
    tm_growth = (large["tracemalloc_peak"] - small["tracemalloc_peak"]) / MIB
    rows.append(
        Row(
            f"tracemalloc peak growth {small['size_mb']:g}->{large['size_mb']:g} MB",
            tm_growth,
            "MiB",
            f"<= {TRACEMALLOC_SLACK_MIB:g}",
            tm_growth <= TRACEMALLOC_SLACK_MIB,
            "0 = peak independent of log size",
        )
    )
    print_table(f"parser benchmark ({'quick, ' if args.quick else ''}largest log {size:g} MB)", rows)
    out = args.out or default_out(NAME)
    params = {"size_mb": size, "sizes_mb": sizes, "repeats": args.repeats, "quick": args.quick}
    write_json(out, NAME, rows, params, {"runs": runs})
    print(f"\nwrote {out}")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
