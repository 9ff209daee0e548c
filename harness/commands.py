"""Sub-commands that run things: list, run, predict, cleanup, kernels (and compare/report)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import HarnessError
from .render import candidate_table, table


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes the same clean-up path as Ctrl-C (sandbox removed, VM stopped, results closed)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class Progress:
    """One line per scenario on stderr; a live counter when stderr is a terminal."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.t0 = total, label, 0, time.monotonic()
        self.tty = sys.stderr.isatty()

    def start(self, name: str) -> None:
        if self.tty:
            sys.stderr.write(f"\r[{self.done + 1}/{self.total}] {self.label}: {name} ...\x1b[K")
            sys.stderr.flush()

    def finish(self, row: dict[str, Any]) -> None:
        self.done += 1
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[row.get("as_expected")]
        line = (
            f"[{self.done}/{self.total}] {mark} {self.label}: {row['scenario']:<24} {row['verdict']:<11} "
            f"{row.get('duration_s', 0):6.2f}s  {_victims(row)}"
        )
        sys.stderr.write(("\r" if self.tty else "") + line + ("\x1b[K\n" if self.tty else "\n"))
        sys.stderr.flush()


def _victims(row: dict[str, Any]) -> str:
    o, p = row.get("observed_victim"), row.get("predicted_victim")
    if not o and not p:
        return row.get("reason", "")[:80] if row.get("as_expected") is not True else ""
    return f"killed {(o or {}).get('workload') or (o or {}).get('name')}, model {(p or {}).get('workload') or '-'}"


def _cmd_list(args: argparse.Namespace) -> int:
    from .scenario import catalogue

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


def _fmt_victim(v: Any) -> str:
    return ",".join(v) if isinstance(v, list) else (v or "-")


def _cmd_run(args: argparse.Namespace) -> int:
    from .scenario import resolve

    scenarios = resolve(args.scenarios, args.backend)
    if not scenarios:
        raise HarnessError(f"no scenario for backend {args.backend}")
    bad = [s.name for s in scenarios if args.backend not in s.backends]
    if bad:
        raise HarnessError(f"scenario(s) {', '.join(bad)} do not run on the {args.backend} backend")
    if os.geteuid() != 0:
        raise HarnessError("oom-harness run needs root (cgroups, /dev/kmsg, sysctls); try sudo")
    _sweep_before_run()
    where, rows = record_run(_runner(args), scenarios * args.repeat, args.results, args.backend)
    _print_summary(rows, where, args.json)
    return 0 if all(r.get("as_expected") is not False for r in rows) else 1


def record_run(runner: Any, scenarios: list[Any], results: str, backend: str) -> tuple[str, list[dict[str, Any]]]:
    """Run *scenarios* with *runner* into a new ``results/<run-id>/`` folder, with progress.

    Ctrl-C and SIGTERM close the record as "interrupted" (the runner cleans up on the way out).
    Returns the folder and the verdict rows.
    """
    from .results import RunRecorder

    rows: list[dict[str, Any]] = []
    with _sigterm_as_interrupt():
        rec = RunRecorder(results, backend=backend, kernel_label=runner.label, env=runner.env())
        status = "interrupted"
        try:
            prog = Progress(len(scenarios), runner.label)
            for _sc, record in runner.run(scenarios, prog):
                rows.append(rec.add(record))
                prog.finish(rows[-1])
            status = "complete"
        finally:
            rec.close(status)
            runner.close()
    return rec.dir, rows


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


class HostRunner:
    """Runs scenarios on this machine's kernel through the shared engine."""

    label = "host"

    def __init__(self) -> None:
        from .engine import protect_self
        from .sandbox import detect_layout

        self.layout = detect_layout()
        self.protected = protect_self()

    def env(self) -> dict[str, Any]:
        import platform

        return {
            "kernel": platform.release(),
            "cgroup_version": self.layout.version,
            "own_cgroup": self.layout.own,
            "self_protected": self.protected,
        }

    def run(self, scenarios: list[Any], prog: Progress) -> Iterator[tuple[Any, dict[str, Any]]]:
        from .engine import EngineOptions, run_scenario

        for sc in scenarios:
            prog.start(sc.name)
            rec = run_scenario(sc, EngineOptions(backend="host"))
            rec["kernel_label"] = "host"
            yield sc, rec

    def close(self) -> None:
        pass


def _sweep_before_run() -> None:
    """Hold our liveness lock, then remove what killed runs left behind, and say so."""
    from .sandbox import hold_liveness_lock, sweep_stale

    hold_liveness_lock()
    removed = sweep_stale()
    if removed:
        print(f"removed {len(removed)} item(s) left by an earlier run that was killed: "
              + ", ".join(os.path.basename(p) for p in removed), file=sys.stderr)


def _runner(args: argparse.Namespace) -> Any:
    if args.backend == "host":
        return HostRunner()
    if args.backend == "vm":
        from vm.runner import VmRunner

        return VmRunner(args.kernel or "6.12", accel=args.accel, modules=getattr(args, "modules", None),
                        cold_boot=getattr(args, "cold_boot", False))
    if args.backend == "docker":
        from .docker_backend import DockerRunner

        return DockerRunner()
    raise HarnessError(f"unknown backend {args.backend}")


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict

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
    from .sandbox import sweep_stale

    removed = sweep_stale()
    try:
        from .docker_backend import sweep_stale as sweep_docker

        removed += sweep_docker()
    except ImportError:
        pass
    try:
        from vm import bootstate

        # unfinished saves of killed runs (and, on request, every saved boot snapshot)
        removed += bootstate.prune(keep=0 if args.snapshots else None)
    except ImportError:
        pass
    for p in removed:
        print(f"removed {p}")
    print(f"{len(removed)} item(s) removed" if removed else "nothing left behind by earlier runs")
    return 0


def _cmd_kernels(args: argparse.Namespace) -> int:
    try:
        from vm.kernels import list_kernels
    except ImportError as e:
        raise HarnessError(f"the VM layer is not available: {e}") from None
    infos = list_kernels(refresh=args.refresh)
    rows = [[k.series, k.release, k.package, k.version, k.suite, "yes" if k.cached else "no"] for k in infos]
    print(table(["series", "release", "package", "version", "suite", "cached"], rows, right=[False] * 6))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("list", help="list the scenario catalogue")
    p.add_argument("--backend", choices=["host", "vm", "docker"], help="only scenarios for this backend")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="run scenarios for real and compare the kernel's victims with the model")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="catalogue names or .toml files (default: all)")
    p.add_argument("--backend", choices=["host", "vm", "docker"], default="host")
    p.add_argument("--kernel", help="VM kernel: 5.10, 6.1, 6.12, 7.2, a release, or a bzImage/vmlinux path")
    p.add_argument("--modules", help="modules folder (lib/modules/<release>) for a --kernel you built yourself")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto", help="QEMU accelerator (VM backend)")
    p.add_argument("--cold-boot", action="store_true",
                   help="boot every VM from scratch instead of resuming the saved boot snapshot of its shape")
    p.add_argument("--results", default=os.environ.get("OOM_HARNESS_RESULTS", "results"), help="results folder")
    p.add_argument("--repeat", type=int, default=1, help="run every scenario N times")
    p.add_argument("--json", action="store_true", help="print the verdict rows as JSON")
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

    try:
        from . import compare_cmd

        compare_cmd.register(sub)
    except ImportError:
        pass
