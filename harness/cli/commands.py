"""Sub-commands that run things on this machine: list, run, predict, cleanup, kernels."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from harness.backends.docker.daemon import sweep_stale as sweep_docker
from harness.backends.registry import BACKENDS, make_runner
from harness.core.variants import summarize
from harness.errors import BuildFailed, HarnessError
from harness.machine.liveness import hold_liveness_lock
from harness.machine.sandbox import sweep_stale
from harness.machine.scenario import catalogue, resolve
from harness.reporting.junit import write_junit
from harness.reporting.ktap import ktap
from harness.reporting.render import candidate_table, table
from harness.reporting.results import load_run
from vm import bootstate
from vm.kbuild import KernelBuildError, build_tree
from vm.kernels import KernelError, list_kernels
from vm.ksource import fetch_source

from .predict import predict
from .session import RunInterrupted, record_run


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [
        [
            s.name,
            ",".join(s.backends),
            s.expect_outcome,
            _fmt_victim(s.expect_victim),
            ",".join(s.requires) or "-",
            s.description[:70],
        ]
        for s in catalogue(args.backend)
    ]
    print(table(["scenario", "backends", "expect", "victim", "requires", "description"], rows, right=[False] * 6))
    return 0


def _run_env(where: str) -> dict[str, Any]:
    try:
        return load_run(where)[0]
    except (OSError, ValueError):
        return {}


def _fmt_victim(v: Any) -> str:
    return ",".join(v) if isinstance(v, list) else (v or "-")


def _cmd_run(args: argparse.Namespace) -> int:
    if args.backend is None:  # --kernel names a VM kernel (or a source tree to build): the VM backend
        args.backend = "vm" if args.kernel else "host"
    if args.kernel and args.backend != "vm":
        raise HarnessError("--kernel applies to the VM backend (--backend vm)")
    scenarios = resolve(args.scenarios, args.backend)
    if not scenarios:
        raise HarnessError(f"no scenario for backend {args.backend}")
    bad = [s.name for s in scenarios if args.backend not in s.backends]
    if bad:
        raise HarnessError(f"scenario(s) {', '.join(bad)} do not run on the {args.backend} backend")
    if os.geteuid() != 0:
        raise HarnessError("oom-harness run needs root (cgroups, /dev/kmsg, sysctls); try sudo")
    _sweep_before_run()
    runner = make_runner(args.backend, args.kernel, accel=args.accel, modules=args.modules, cold_boot=args.cold_boot,
                         kconfig=args.kconfig)
    try:
        where, rows = record_run(runner, scenarios * args.repeat, args.results, args.backend)
    except RunInterrupted as e:  # the record is closed as "interrupted"; still hand CI what ran
        _write_junit(args.junit, [e.where])
        raise
    _write_junit(args.junit, [where])
    fmt = "json" if args.json else args.format
    if fmt == "ktap":
        env = _run_env(where)
        sys.stdout.write(ktap(rows, header=[
            f"backend {args.backend}, kernel {env.get('kernel', '?')} ({runner.label}); results in {where}"]))
    else:
        _print_summary(rows, where, fmt == "json")
    text = variant_summary(rows, where)
    if text and fmt not in ("json", "ktap"):
        print(f"rule variants: {text}")
    elif text:
        print(f"rule variants: {text}", file=sys.stderr)
    return 0 if all(r.get("as_expected") is not False for r in rows) else 1


def _write_junit(path: str | None, run_dirs: list[str]) -> None:
    if path:
        write_junit(path, run_dirs)
        print(f"wrote JUnit XML {path}", file=sys.stderr)


def variant_summary(rows: list[dict[str, Any]], where: str | None = None) -> str:
    """When the model does not explain the run: the rule variants consistent with every observation
    (:mod:`harness.core.variants`), saved as ``variants.json`` in the run folder; "" when the model
    explains every observation."""
    res = summarize([(r["scenario"], r.get("variants")) for r in rows if isinstance(r.get("variants"), dict)])
    if where and res["scenarios"]:
        with open(os.path.join(where, "variants.json"), "w") as f:
            json.dump(res, f, indent=1)
    return str(res["text"])


def _print_summary(rows: list[dict[str, Any]], where: str, as_json: bool) -> None:
    if as_json:
        json.dump({"results": where, "rows": rows}, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return
    t = [
        [
            r["scenario"],
            r.get("kernel_label", ""),
            r["verdict"],
            {True: "yes", False: "NO", None: "skip"}[r.get("as_expected")],
            ((r.get("observed_victim") or {}).get("workload") or "-"),
            ((r.get("predicted_victim") or {}).get("workload") or "-"),
            r.get("victim_points"),
            (r.get("runner_up") or {}).get("points"),
            (r.get("oom_score_check") or {}).get("agree"),
            r.get("duration_s"),
        ]
        for r in rows
    ]
    print(
        table(
            [
                "scenario",
                "kernel",
                "verdict",
                "as expected",
                "killed",
                "model",
                "points",
                "runner-up",
                "oom_score ok",
                "s",
            ],
            t,
        )
    )
    bad = [r for r in rows if r.get("as_expected") is False]
    for r in bad + [r for r in rows if r.get("as_expected") is None]:
        print(f"  {r['scenario']}: {r['reason']}")
    ok = sum(1 for r in rows if r.get("as_expected") is True)
    skipped = sum(1 for r in rows if r.get("as_expected") is None)
    print(f"{ok} as expected, {len(bad)} not, {skipped} skipped; results in {where}")


def _sweep_before_run() -> None:
    """Hold our liveness lock, then remove what killed runs left behind, and say so."""
    hold_liveness_lock()
    removed = sweep_stale()
    if removed:
        print(f"removed {len(removed)} item(s) left by an earlier run that was killed: "
              + ", ".join(os.path.basename(p) for p in removed), file=sys.stderr)


def _cmd_predict(args: argparse.Namespace) -> int:
    doc = predict(args.cgroup, era=args.era)
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(
        f"{doc['scope']}: {doc['tasks']} task(s), totalpages {doc['totalpages']} ({doc['totalpages_note']}), "
        f"kernel {doc['kernel']}, era {doc['era']}"
    )
    tail = [("adj", "oom_score_adj"), ("oom_score(model)", "oom_score_model"),
            ("oom_score(kernel)", "oom_score_kernel")]
    print(candidate_table(doc["candidates"][: args.top], tail))
    nxt = doc.get("next_victim")
    print(f"next victim: {nxt['pid']} ({nxt['name']}), {doc['why']}" if nxt else "no eligible task")
    if doc.get("disagreements"):
        print(
            f"note: {doc['disagreements']} task(s) where the model's oom_score differs from the kernel's by more "
            "than 1 (counters moved between the two reads)"
        )
    return 0


def _cmd_cleanup(args: argparse.Namespace) -> int:
    removed = sweep_stale()
    removed += sweep_docker()
    # unfinished saves of killed runs (and, on request, every saved boot snapshot)
    removed += [str(p) for p in bootstate.prune(keep=0 if args.snapshots else None)]
    for p in removed:
        print(f"removed {p}")
    print(f"{len(removed)} item(s) removed" if removed else "nothing left behind by earlier runs")
    return 0


def _cmd_kernels(args: argparse.Namespace) -> int:
    infos = list_kernels(refresh=args.refresh)
    rows = [[k.series, k.release, k.package, k.version, k.suite, "yes" if k.cached else "no"] for k in infos]
    print(table(["series", "release", "package", "version", "suite", "cached"], rows, right=[False] * 6))
    return 0


def _cmd_kernel_source(args: argparse.Namespace) -> int:
    try:
        print(fetch_source(args.series))
    except KernelError as e:
        raise HarnessError(str(e)) from None
    return 0


def _cmd_build_kernel(args: argparse.Namespace) -> int:
    try:
        b = build_tree(args.tree, args.kconfig, jobs=args.jobs)
    except KernelBuildError as e:
        raise BuildFailed(str(e)) from None
    except KernelError as e:
        raise HarnessError(str(e)) from None
    print(f"{b.kernel.release} {b.kernel.image}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernel-source", help="fetch and unpack Debian's linux-source-SERIES; print the tree's path")
    p.add_argument("series", help="5.10, 6.1, 6.12 (any series Debian has a linux-source package for)")
    p.set_defaults(func=_cmd_kernel_source)

    p = sub.add_parser("build-kernel", help="build a kernel source tree for the VM backend (what run --kernel DIR "
                       "does first); print its release and vmlinux")
    p.add_argument("tree", help="kernel source tree (built out of tree under the cache)")
    p.add_argument("--kconfig", metavar="FILE", help="extra Kconfig fragment merged on top of the harness's")
    p.add_argument("--jobs", "-j", type=int, default=2, help="make -j (default 2)")
    p.set_defaults(func=_cmd_build_kernel)

    p = sub.add_parser("list", help="list the scenario catalogue")
    p.add_argument("--backend", choices=BACKENDS, help="only scenarios for this backend")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="run scenarios for real and compare the kernel's victims with the model")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="catalogue names or .toml files (default: all)")
    p.add_argument("--backend", choices=BACKENDS, help="where to run (default: vm when --kernel is given, else host)")
    p.add_argument("--kernel", help="VM kernel: 5.10, 6.1, 6.12, 7.2, a release, a bzImage/vmlinux path, or a "
                   "kernel source tree to build (exit 125 when it does not build: git bisect run skips it)")
    p.add_argument("--kconfig", metavar="FILE", help="extra Kconfig fragment merged on top of the harness's "
                   "(vm/kconfig/oom-harness.config) when --kernel is a source tree")
    p.add_argument("--modules", help="modules folder (lib/modules/<release>) for a --kernel you built yourself")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto", help="QEMU accelerator (VM backend)")
    p.add_argument("--cold-boot", action="store_true",
                   help="boot every VM from scratch instead of resuming the saved boot snapshot of its shape")
    p.add_argument("--results", default=os.environ.get("OOM_HARNESS_RESULTS", "results"), help="results folder")
    p.add_argument("--repeat", type=int, default=1, help="run every scenario N times")
    p.add_argument("--format", choices=["table", "json", "ktap"], default="table",
                   help="what goes to stdout: the table (default), the verdict rows as JSON, or KTAP version 1 "
                   "(as kselftest/KUnit print it; progress stays on stderr)")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument("--junit", metavar="PATH", help="also write JUnit XML here (one testcase per scenario, the "
                   "kernel's report attached)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("predict", help="rank a live cgroup's (or the system's) tasks as the OOM killer would now")
    p.add_argument("--cgroup", help="memory cgroup path (relative to the memory mount); default: whole system")
    p.add_argument("--era", help="force the model era")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("cleanup", help="remove cgroups, VMs and temp files left by killed runs")
    p.add_argument("--snapshots", action="store_true", help="also delete every saved VM boot snapshot")
    p.set_defaults(func=_cmd_cleanup)

    p = sub.add_parser("kernels", help="list VM kernels available from Debian and cached here")
    p.add_argument("--refresh", action="store_true", help="update the private apt lists first")
    p.set_defaults(func=_cmd_kernels)

