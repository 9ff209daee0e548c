"""``oom-harness compare`` (run scenarios on several kernels, then compare) and ``oom-harness report``.

``compare --kernels host,5.10,6.1,6.12,7.2`` runs the scenarios once per kernel label, exactly as
``run`` does (``host`` on this machine's kernel, any other label in a QEMU guest booting that Debian
kernel series), each into its own ``results/<run-id>/``, then builds the comparison report from
those runs.  ``report RUN...`` rebuilds the same report from saved run folders without running
anything.

A label may be a kernel source tree (``6.12,~/linux``): it is built first (``vm.kbuild``) and
labelled with its folder name.  When a kernel's victims disagree with the model, the rule variants
consistent with every observation of its run (``harness.core.variants``) are named in the report.

Exit codes: 0 when the comparison was built (kernels that differ are findings, not failures),
2 on bad input (unknown kernel label, unknown scenario, no runs), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from harness.backends.base import Runner
from harness.backends.registry import make_runner
from harness.backends.vm import kernel_label
from harness.core.variants import summarize
from harness.errors import HarnessError
from harness.machine.scenario import Scenario, resolve
from harness.reporting import report
from harness.reporting.junit import write_junit
from harness.reporting.ktap import write_ktap
from vm.kbuild import is_kernel_tree
from vm.kernels import KNOWN_SERIES, cached_kernels

from .commands import variant_summary
from .session import RunInterrupted, record_run, sigterm_as_interrupt

SERIES_RE = re.compile(r"\d+\.\d+")


def parse_kernels(spec: str) -> list[str]:
    """``host,5.10,6.1`` -> labels, checked before anything runs (one-line error on a bad label)."""
    labels = list(dict.fromkeys(k.strip() for k in spec.split(",") if k.strip()))
    if not labels:
        raise HarnessError("--kernels is empty: give labels like host,5.10,6.1,6.12,7.2")
    known = _known_series()
    for k in labels:
        path = os.path.expanduser(k)
        if k == "host" or (SERIES_RE.fullmatch(k) and (not known or k in known)) or os.path.isfile(path):
            continue
        if os.path.isdir(path):
            if not is_kernel_tree(Path(path)):
                raise HarnessError(f"{k} is a directory but not a kernel source tree (no top Makefile with "
                                   "VERSION/PATCHLEVEL)")
            continue
        hint = ", ".join(["host", *sorted(known, key=_ver)]) if known else "host or a series like 6.12"
        raise HarnessError(f"unknown kernel label {k!r}: expected {hint} (or a kernel image path or source tree)")
    names = [k if k == "host" else kernel_label(k) for k in labels]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HarnessError(f"two kernels would share the label {dup[0]!r}: give the source trees different "
                           "folder names")
    return labels


def _ver(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split(".") if x.isdigit())


def _known_series() -> set[str]:
    """The tested series plus any cached one."""
    known = set(KNOWN_SERIES)
    try:
        known.update(k.series for k in cached_kernels() if k.series)
    except Exception:  # noqa: BLE001 - a broken cache must not stop the label check
        pass
    return known


def _label_backend(label: str) -> str:
    return "host" if label == "host" else "vm"


def plan(labels: list[str], names: list[str]) -> tuple[dict[str, list[Scenario]], list[str]]:
    """Scenarios per kernel label, and notes on what was left out (scenario does not run on that backend)."""
    notes: list[str] = []
    per: dict[str, list[Scenario]] = {}
    chosen = resolve(names, None)
    for label in labels:
        backend = _label_backend(label)
        ok = [s for s in chosen if backend in s.backends]
        left = [s.name for s in chosen if backend not in s.backends]
        if left:
            notes.append(f"{label}: left out {', '.join(left)} (not for the {backend} backend)")
        if not ok:
            notes.append(f"{label}: no scenario to run on the {backend} backend; kernel skipped")
            continue
        per[label] = ok
    return per, notes


def _runner_for(label: str, args: argparse.Namespace) -> Runner:
    """The runner of one kernel label (a source tree gets ``--kconfig``)."""
    tree = os.path.isdir(os.path.expanduser(label))
    return make_runner(_label_backend(label), None if label == "host" else label, accel=args.accel,
                       cold_boot=args.cold_boot, kconfig=args.kconfig if tree else None)


def _variant_note(label: str, rows: list[dict[str, Any]], where: str) -> str | None:
    """When a kernel's victims or oom_score values disagree with the model: the rule variants that fit
    (harness.core.variants), said on stderr and returned for the report's notes."""
    text = variant_summary(rows, where)
    if not text:
        return None
    res = summarize([(r["scenario"], r.get("variants")) for r in rows if isinstance(r.get("variants"), dict)])
    what = (f"the model's victim differs in {', '.join(res['victims_differ'])}" if res["victims_differ"]
            else f"oom_score values differ from the model in {', '.join(res['unexplained'])}")
    note = f"{kernel_label(label) if label != 'host' else label}: {what}; rule variants {text}"
    print(f"note: {note}", file=sys.stderr)
    return note


def _run_one(label: str, scenarios: list[Scenario], args: argparse.Namespace, notes: list[str]) -> str:
    """Run *scenarios* on one kernel label into a new run folder, like ``oom-harness run``; returns the folder."""
    backend = _label_backend(label)
    where, rows = record_run(_runner_for(label, args), scenarios * args.repeat, args.results, backend)
    note = _variant_note(label, rows, where)
    if note:
        notes.append(note)
    return where


def _cmd_compare(args: argparse.Namespace) -> int:

    labels = parse_kernels(args.kernels)
    if args.repeat < 1:
        raise HarnessError("--repeat must be 1 or more")
    if args.jobs < 1:
        raise HarnessError("-j/--jobs must be 1 or more")
    formats = report.parse_formats(args.format)
    per, notes = plan(labels, args.scenarios)
    if not per:
        raise HarnessError("nothing to run: " + "; ".join(notes))
    if os.geteuid() != 0:
        raise HarnessError("oom-harness compare needs root (cgroups, /dev/kmsg, sysctls); try sudo")
    out = args.out or os.path.join(args.results, f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    dirs: list[str] = []
    if args.jobs > 1 and len(per) > 1:
        return _compare_parallel(per, args, notes, out, formats)
    try:
        for label, scenarios in per.items():
            print(f"== {label}: {len(scenarios)} scenario(s)", file=sys.stderr, flush=True)
            try:
                dirs.append(_run_one(label, scenarios, args, notes))
            except HarnessError as e:
                # one kernel that cannot boot (not downloadable, no QEMU) must not lose the others' results
                notes.append(f"{label}: not run: {e}")
                print(f"oom-harness: {label}: {e}", file=sys.stderr)
    except KeyboardInterrupt as e:
        if isinstance(e, RunInterrupted):
            dirs.append(e.where)  # the kernel that was running: read as far as it got
        if dirs:
            rep = report.build_report(dirs, out, formats, args.plot_scenario, notes=[*notes, "compare was interrupted"])
            report.print_files(rep)
            _ci_files(args, dirs)
        raise
    if not dirs:
        raise HarnessError("no kernel could be run: " + "; ".join(notes))
    rep = report.build_report(dirs, out, formats, args.plot_scenario, notes=notes)
    sys.stdout.write(rep.markdown)
    report.print_files(rep)
    _ci_files(args, dirs)
    return 0


def _compare_parallel(per: dict[str, list[Scenario]], args: argparse.Namespace, notes: list[str], out: str,
                      formats: list[str]) -> int:
    """``compare -j N``: up to N kernels at once, one QEMU each (the host label is one run of its own, so
    host scenarios never run in parallel with each other).  Kernels are resolved and the guest image
    built first, one at a time (they share the download cache); the report lists the kernels in the
    same order whatever order they finish in.  Ctrl-C / SIGTERM: each kernel stops after its current
    scenario and its run is kept as "interrupted"."""
    runners: dict[str, Runner] = {}
    for label in per:
        try:
            runners[label] = _runner_for(label, args)
            kernel = getattr(runners[label], "kernel", None)
            if kernel is not None:  # the guest image and this kernel's initrd, before any thread wants them
                from vm.image import build_initrd

                build_initrd(kernel)
        except HarnessError as e:
            notes.append(f"{label}: not run: {e}")
            print(f"oom-harness: {label}: {e}", file=sys.stderr)
    cancel = threading.Event()
    done: dict[str, str] = {}

    def job(label: str) -> str:
        scenarios = per[label]
        print(f"== {label}: {len(scenarios)} scenario(s)", file=sys.stderr, flush=True)
        try:
            where, rows = record_run(runners[label], scenarios * args.repeat, args.results,
                                     _label_backend(label), cancel=cancel, parallel=True)
            note = _variant_note(label, rows, where)
            if note:
                notes.append(note)
        except RunInterrupted as e:
            where = e.where
        print(f"== {label}: done", file=sys.stderr, flush=True)
        return where

    interrupted = False
    with sigterm_as_interrupt(), ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="kernel") as ex:
        futures = {ex.submit(job, label): label for label in runners}
        pending = set(futures)
        while pending:
            try:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                interrupted = True
                cancel.set()
                for f in pending:
                    f.cancel()  # kernels not started yet never start
                print("oom-harness: interrupted: each kernel stops after its current scenario", file=sys.stderr,
                      flush=True)
                continue
            for f in finished:
                label = futures[f]
                if f.cancelled():
                    notes.append(f"{label}: not run (interrupted before it started)")
                    continue
                try:
                    done[label] = f.result()
                except HarnessError as e:
                    notes.append(f"{label}: not run: {e}")
                    print(f"oom-harness: {label}: {e}", file=sys.stderr)
    dirs = [done[label] for label in per if label in done]  # the order asked for, not the order finished
    if interrupted:
        notes.append("compare was interrupted")
    if not dirs:
        if interrupted:
            raise KeyboardInterrupt
        raise HarnessError("no kernel could be run: " + "; ".join(notes))
    rep = report.build_report(dirs, out, formats, args.plot_scenario, notes=notes)
    if interrupted:
        report.print_files(rep)
        _ci_files(args, dirs)
        raise KeyboardInterrupt
    sys.stdout.write(rep.markdown)
    report.print_files(rep)
    _ci_files(args, dirs)
    return 0


def _ci_files(args: argparse.Namespace, dirs: list[str]) -> None:
    """The files CI systems read, when asked: JUnit XML (``--junit``) and KTAP (``--ktap``)."""
    if args.junit:
        write_junit(args.junit, dirs)
        print(f"wrote JUnit XML {args.junit}", file=sys.stderr)
    ktap_path = getattr(args, "ktap", None)  # callers that build the Namespace themselves may leave it out
    if ktap_path:
        write_ktap(ktap_path, dirs)
        print(f"wrote KTAP {ktap_path}", file=sys.stderr)


def _cmd_report(args: argparse.Namespace) -> int:

    formats = report.parse_formats(args.format)
    out = args.out or os.path.join(os.environ.get("OOM_HARNESS_RESULTS", "results"),
                                   f"report-{time.strftime('%Y%m%d-%H%M%S')}")
    rep = report.build_report(args.runs, out, formats, args.plot_scenario)
    sys.stdout.write(rep.markdown)
    report.print_files(rep)
    _ci_files(args, [r.dir for r in rep.runs])
    for r in rep.partial_runs:
        print(f"note: {r.run_id} is a partial run ({r.status_note()})", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    results = os.environ.get("OOM_HARNESS_RESULTS", "results")
    p = sub.add_parser(
        "compare",
        help="run scenarios on several kernels and compare victims, verdicts and report formats",
        description="Run the scenarios once per kernel label (host = this machine, others = a QEMU guest "
        "booting that Debian kernel series), then write the comparison (Markdown, HTML, CSV, Parquet, plots). "
        "Differences between kernels are findings: the exit code is 0 when the comparison was built.",
    )
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="catalogue names or .toml files (default: all)")
    p.add_argument("--kernels", required=True, help="comma-separated labels, e.g. host,5.10,6.1,6.12,7.2; a "
                   "kernel source tree (e.g. 6.12,~/linux) is built first and labelled with its folder name")
    p.add_argument("--kconfig", metavar="FILE", help="extra Kconfig fragment for the kernels built from source")
    p.add_argument("--results", default=results, help="where the runs go (default: %(default)s)")
    p.add_argument("--out", help="report folder (default: RESULTS/compare-<timestamp>)")
    p.add_argument("--format", default=",".join(("md", "html", "csv", "parquet")),
                   help="outputs, comma-separated from md,html,csv,parquet (default: all)")
    p.add_argument("--plot-scenario", action="append", metavar="NAME",
                   help="draw the points-per-task plot only for this scenario (repeatable; default: all)")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto", help="QEMU accelerator")
    p.add_argument("--cold-boot", action="store_true", help="boot every VM from scratch (no boot snapshots)")
    p.add_argument("--repeat", type=int, default=1, help="run every scenario N times per kernel")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="run up to N kernels at once (one QEMU each; the host's scenarios never run in parallel "
                   "with each other); progress lines carry the kernel label, the report's order is the --kernels "
                   "order (default: 1)")
    p.add_argument("--junit", metavar="PATH", help="also write JUnit XML here: one testsuite per kernel, one "
                   "testcase per scenario, the kernel's report attached")
    p.add_argument("--ktap", metavar="PATH", help="also write KTAP version 1 here: one test per kernel, its "
                   "scenarios as subtests (as KUnit prints suites)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "report",
        help="rebuild the kernel comparison from saved run folders (nothing is run)",
        description="Read results/<run-id> folders (or a folder holding them, like results/) and write the "
        "comparison. Partial runs (killed, interrupted, still running) are read as far as they got and flagged.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders, or folders that hold run folders")
    p.add_argument("--out", help="report folder (default: RESULTS/report-<timestamp>)")
    p.add_argument("--format", default=",".join(("md", "html", "csv", "parquet")),
                   help="outputs, comma-separated from md,html,csv,parquet (default: all)")
    p.add_argument("--plot-scenario", action="append", metavar="NAME",
                   help="draw the points-per-task plot only for this scenario (repeatable; default: all)")
    p.add_argument("--junit", metavar="PATH", help="also write JUnit XML of these runs here")
    p.add_argument("--ktap", metavar="PATH", help="also write KTAP version 1 of these runs here (one test per "
                   "kernel, its scenarios as subtests)")
    p.set_defaults(func=_cmd_report)
