"""The VM backend: boot a chosen kernel in QEMU and run scenarios in it with the shared engine.

Scenarios that leave the guest healthy share one boot (grouped by the VM shape they need:
memory, NUMA nodes, swap).  A scenario that panics the guest (``vm.panic_on_oom``) gets a boot
of its own; a guest that panics or hangs unexpectedly is reported with its console tail, killed,
and the next scenario gets a fresh guest.  A "boot" here is a resume from the boot snapshot of
the shape whenever there is one (:mod:`vm.bootstate`): a fresh guest costs ~0.2 s, not ~2 s, so
isolating a scenario in its own guest is cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

from harness.core.analysis import Context, analyze_all
from harness.core.parser import parse_text
from harness.errors import BuildFailed, HarnessError
from harness.machine.guest import RECORD_MARK
from harness.machine.record import ScenarioRecord
from harness.machine.scenario import Scenario
from vm.kbuild import BuildInfo, KernelBuildError, build_tree
from vm.kernels import KernelError, get_kernel
from vm.machine import GuestError, GuestPanic, GuestVM

from .base import ProgressSink

GUEST_DIR = "/tmp/oomh-scenarios"
#: Imported by the guest agent once per VM shape (before its boot snapshot); each scenario then
#: runs in a child forked from it (``GuestVM.run_module``) instead of a fresh ``python3 -m``.
GUEST_PRELOAD = ("harness.machine.guest",)


def vm_shape(sc: Scenario) -> tuple[int, int, int, int]:
    v = sc.vm
    return (int(v.get("mem_mb", 512)), int(v.get("numa_nodes", 1)), int(v.get("swap_mb", 0)), int(v.get("smp", 1)))


def kernel_label(kernel: str) -> str:
    """The label of a ``--kernel`` value in tables: the series or release as given, a source tree's
    folder name, ``custom`` for a kernel image path."""
    path = os.path.expanduser(kernel)
    if os.path.isdir(path):
        return os.path.basename(os.path.abspath(path)) or path
    return kernel if "/" not in kernel else "custom"


class VmRunner:
    def __init__(self, kernel: str, accel: str = "auto", modules: str | None = None, cold_boot: bool = False,
                 kconfig: str | None = None, label: str | None = None) -> None:
        """``cold_boot``: boot every VM afresh rather than resume the boot snapshot of its shape.
        ``kernel`` may be a kernel source tree: it is built first (:mod:`vm.kbuild`, with the extra
        fragment ``kconfig``); a tree that does not build raises :class:`BuildFailed` (exit 125)."""
        if shutil.which("qemu-system-x86_64") is None:
            raise HarnessError("qemu-system-x86_64 not found: install it (apt-get install qemu-system-x86, "
                               "or make setup)")
        self.kernel_arg = kernel
        self.label = label or kernel_label(kernel)
        self.accel = accel
        self.snapshot = False if cold_boot else None  # None: vm.bootstate decides (on unless switched off)
        self.build: BuildInfo | None = None
        tree = os.path.expanduser(kernel)
        if os.path.isdir(tree):
            print(f"building kernel from {tree} ...", file=sys.stderr, flush=True)
            try:
                self.build = build_tree(tree, kconfig)
            except KernelBuildError as e:
                raise BuildFailed(str(e)) from None
            except KernelError as e:
                raise HarnessError(str(e)) from None
            self.kernel = self.build.kernel
        else:
            if kconfig:
                raise HarnessError("--kconfig applies to a kernel built from source: give --kernel a source tree")
            print(f"resolving kernel {kernel} ...", file=sys.stderr, flush=True)
            try:
                self.kernel = get_kernel(kernel, modules)
            except KernelError as e:
                raise HarnessError(str(e)) from None
        self.boots: list[dict[str, Any]] = []

    def env(self) -> dict[str, Any]:
        env: dict[str, Any] = {"kernel": self.kernel.release, "kernel_series": self.kernel.series,
                               "cgroup_version": 2, "vm": True, "accel_requested": self.accel}
        if self.build is not None:
            env["kernel_build"] = {"tree": str(self.build.tree), "build_id": self.kernel.build_id,
                                   "build_dir": str(self.build.build_dir), "build_s": round(self.build.build_s, 2),
                                   "configured": self.build.configured}
        return env

    def close(self) -> None:
        pass

    def run(self, scenarios: list[Scenario], prog: ProgressSink) -> Iterator[tuple[Scenario, ScenarioRecord]]:
        groups: dict[tuple[int, int, int, int], list[Scenario]] = {}
        for sc in scenarios:
            groups.setdefault(vm_shape(sc), []).append(sc)
        for shape, scs in groups.items():
            healthy = [s for s in scs if s.expect_outcome != "panic"]
            panics = [s for s in scs if s.expect_outcome == "panic"]
            queue = list(healthy)
            while queue:
                yield from self._boot_and_run(shape, queue, prog)
            for sc in panics:
                yield from self._boot_and_run(shape, [sc], prog)

    def _boot_and_run(self, shape: tuple[int, int, int, int], queue: list[Scenario],
                      prog: ProgressSink) -> Iterator[tuple[Scenario, ScenarioRecord]]:
        mem, numa, swap, smp = shape
        t0 = time.monotonic()
        try:
            vm = GuestVM(self.kernel, mem_mb=mem, numa_nodes=numa, swap_mb=swap, smp=smp, accel=self.accel,
                         snapshot=self.snapshot, preload=GUEST_PRELOAD)
            vm.__enter__()
        except GuestError as e:
            sc = queue.pop(0)
            yield sc, self._error(sc, f"guest failed to boot: {e}", getattr(e, "console_tail", ""))
            return
        self.boots.append({"shape": shape, "boot_s": round(time.monotonic() - t0, 3), "accel": vm.accel_used,
                           "resumed_from": vm.resumed_from})
        how = "resumed" if vm.resumed_from else "booted"
        print(f"  {how} {self.kernel.release} ({vm.accel_used}, {mem} MiB, {numa} node(s), swap {swap} MiB) "
              f"in {vm.boot_seconds:.2f}s", file=sys.stderr, flush=True)
        try:
            vm.exec(["mkdir", "-p", GUEST_DIR], 10)
            while queue:
                sc = queue.pop(0)
                prog.start(sc.name)
                rec = self._run_one(vm, sc)
                rec.vm = {**(rec.vm or {}), "boot_s": round(vm.boot_seconds or 0.0, 3), "accel": vm.accel_used,
                          "resumed_from_snapshot": vm.resumed_from}
                yield sc, rec
                if rec.guest_lost:
                    return  # the next scenario needs a fresh boot
        finally:
            vm.__exit__(None, None, None)

    def _run_one(self, vm: GuestVM, sc: Scenario) -> ScenarioRecord:
        with open(sc.path, "rb") as f:
            data = f.read()
        gpath = f"{GUEST_DIR}/{sc.name}.toml"
        vm.write_file(gpath, data)
        t0 = time.monotonic()
        try:
            r = vm.run_module("harness.machine.guest", [gpath], timeout=sc.timeout_s + 60, oom_score_adj=-1000)
        except GuestPanic as e:
            console = vm.console_text() if hasattr(vm, "console_text") else e.console_tail
            return self._from_console(sc, console, time.monotonic() - t0)
        except GuestError as e:
            return self._error(sc, f"guest hung or died: {e}", e.console_tail)
        for line in r.stdout.splitlines():
            if line.startswith(RECORD_MARK):
                rec = ScenarioRecord.from_dict(json.loads(line[len(RECORD_MARK):]))
                rec.kernel_label = self.label
                return rec
        return self._error(sc, f"no result from the guest (rc {r.rc}): {r.stderr.strip()[-300:]}", "")

    def _error(self, sc: Scenario, reason: str, console_tail: str) -> ScenarioRecord:
        rec = ScenarioRecord(scenario=sc.name, backend="vm", kernel=self.kernel.release, kernel_label=self.label,
                             reason=reason, console_tail=console_tail, guest_lost=True)
        return rec

    def _from_console(self, sc: Scenario, console: str, seconds: float) -> ScenarioRecord:
        """The guest panicked: judge the scenario from the serial console's kernel messages."""
        events = parse_text(console)
        docs = [a.to_dict() for a in analyze_all(events, Context())]
        panicked = any(d.get("panic") for d in docs) or "Kernel panic" in console
        # vm.panic_on_oom, or nothing killable in a whole-system OOM ("System is deadlocked on memory")
        oom_panic = any(d["verdict"] == "no-victim" and ("panic_on_oom" in d["reason"] or "deadlocked" in d["reason"])
                        for d in docs)
        rec = ScenarioRecord(
            scenario=sc.name, backend="vm", kernel=self.kernel.release, kernel_label=self.label,
            expected={"outcome": sc.expect_outcome, "victim": sc.expect_victim}, events=docs,
            kernel_log=console, duration_s=round(seconds, 3), guest_lost=True,
            console_tail="\n".join(console.splitlines()[-40:]),
        )
        if sc.expect_outcome == "panic":
            ok = panicked and oom_panic
            rec.set_verdict("no-victim" if oom_panic else "error", "panic", ok,
                            next(d["reason"] for d in docs if d["verdict"] == "no-victim") if oom_panic
                            else "the guest panicked, but not through panic_on_oom or an OOM with no victim"
                            if panicked else "no panic seen")
            rec.predicted_victim = docs[0].get("predicted_victim") if docs else None
        else:
            rec.set_verdict("error", "error", False, "the guest panicked unexpectedly: " + next(
                (ln for ln in console.splitlines() if "Kernel panic" in ln), "see console_tail"))
        return rec
