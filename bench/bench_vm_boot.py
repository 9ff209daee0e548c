"""Boot-time benchmark: QEMU start -> agent ready, against a bare boot of the same kernel.

For each kernel, N round-robin repetitions of:

* ``ready``: ``GuestVM`` start until its agent answers, the way the VM runner starts every VM:
  resumed from the boot snapshot of its shape (:mod:`vm.bootstate`; one priming boot saves it
  first), with ``harness.machine.guest`` preloaded.  Plus, in that guest, the time of a first call of the
  harness's guest side the way a scenario runs it (``run_module("harness.machine.guest")``: ``first_call``)
  and of a first fresh ``python3 -c 'import json, psutil'`` (``first_python``);
* ``cold``: the same with snapshots off: a full boot to the agent's ready frame (what the first VM
  of a shape pays, before it saves the snapshot);
* ``bare``: the same QEMU recipe with a busybox-only initramfs whose /init prints a marker on the
  serial console (the floor: kernel boot alone).

The target (issue 7) is ``ready`` <= 1.2x ``bare``; printed too: ``cold`` / ``bare``, and ``usable``
/ ``bare`` where ``usable`` = ``ready`` + ``first_call`` (the strictest reading of "ready": the guest
has run the harness once; TCG translates a resumed QEMU's code afresh).

Round-robin (every config once, then again) so slow stretches of the host hit all configs alike;
TCG boot times vary by +-25 % on a busy host.  Prints a table and writes JSON to ``--out``.

    python bench/bench_vm_boot.py --kernels 5.10,6.1,6.12,7.2 -n 5 --out results/vm-boot.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.backends.vm import GUEST_PRELOAD  # noqa: E402
from vm.image import build_initrd, minimal_initrd  # noqa: E402
from vm.kernels import Kernel, get_kernel  # noqa: E402
from vm.machine import BASE_CMDLINE, TCG_CPU, GuestVM, bare_qemu_cmd, qemu_version  # noqa: E402

MARKER = "@@BARE@@"


def bare_boot(kernel: Kernel, initrd: Path, mem_mb: int, timeout: float = 60.0) -> float:
    """Seconds from starting QEMU until /init's marker appears on the serial console."""
    cmd = bare_qemu_cmd(kernel, initrd, accel="tcg", mem_mb=mem_mb, serial="stdio")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        assert p.stdout is not None
        for line in p.stdout:
            if MARKER.encode() in line:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                break
        raise RuntimeError(f"bare boot of {kernel.release} gave no marker")
    finally:
        p.kill()
        p.wait()


def agent_boot(kernel: Kernel, initrd: Path, mem_mb: int, snapshot: bool) -> tuple[float, float, float, float]:
    """``(boot_seconds, guest uptime at ready, first harness call s, first python exec s)`` of one GuestVM
    started as the VM runner starts it."""
    with GuestVM(kernel, mem_mb=mem_mb, accel="tcg", initrd=initrd, snapshot=snapshot, preload=GUEST_PRELOAD) as vm:
        assert vm.boot_seconds is not None
        if snapshot and not vm.resumed_from:
            raise RuntimeError(f"{kernel.release}: expected to resume from a boot snapshot")
        t = time.monotonic()
        r = vm.run_module("harness.machine.guest", [], 60, oom_score_adj=-1000)  # no scenario: just the entry point
        call = time.monotonic() - t
        if not r.ok:
            raise RuntimeError(f"harness.machine.guest in guest failed: {r.stderr}")
        t = time.monotonic()
        r = vm.exec(["python3", "-c", "import json, psutil; print(1)"], 60)
        first = time.monotonic() - t
        if not r.ok:
            raise RuntimeError(f"python in guest failed: {r.stderr}")
        return vm.boot_seconds, float(vm.ready_info.get("uptime", 0)), call, first


def summary(xs: list[float]) -> dict[str, float | list[float]]:
    return {
        "runs": [round(x, 3) for x in xs],
        "median": round(statistics.median(xs), 3),
        "min": round(min(xs), 3),
        "max": round(max(xs), 3),
        "stdev": round(statistics.stdev(xs), 3) if len(xs) > 1 else 0.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="5.10,6.1,6.12,7.2")
    ap.add_argument("-n", type=int, default=5, help="repetitions per config")
    ap.add_argument("--mem", type=int, default=512)
    ap.add_argument("--out", type=Path, help="JSON output path (default results/bench/vm-boot-<time>.json)")
    args = ap.parse_args()

    kernels = {s: get_kernel(s) for s in args.kernels.split(",")}
    initrds = {s: build_initrd(k) for s, k in kernels.items()}
    bare = minimal_initrd(MARKER)
    data: dict[str, dict[str, list[float]]] = {
        s: {"ready": [], "cold": [], "cold_uptime": [], "first_call": [], "first_python": [], "bare": []}
        for s in kernels
    }
    for s, k in kernels.items():  # priming: make sure the boot snapshot of this shape exists
        with GuestVM(k, mem_mb=args.mem, accel="tcg", initrd=initrds[s], snapshot=True, preload=GUEST_PRELOAD):
            pass
    for i in range(args.n):
        for s, k in kernels.items():
            r, _, call, first = agent_boot(k, initrds[s], args.mem, snapshot=True)
            c, up, _, _ = agent_boot(k, initrds[s], args.mem, snapshot=False)
            d = data[s]
            d["ready"].append(r)
            d["cold"].append(c)
            d["cold_uptime"].append(up)
            d["first_call"].append(call)
            d["first_python"].append(first)
            d["bare"].append(bare_boot(k, bare, args.mem))
            print(
                f"[{i + 1}/{args.n}] {s:5} ready {r:.2f}s  cold {c:.2f}s  bare {d['bare'][-1]:.2f}s  "
                f"first harness call {call:.2f}s  first python {first:.2f}s",
                file=sys.stderr,
                flush=True,
            )

    result = {
        "host": {"kernel": platform.release(), "qemu": qemu_version(), "cpus": __import__("os").cpu_count()},
        "recipe": {"accel": "tcg", "cpu": TCG_CPU, "mem_mb": args.mem, "smp": 1, "cmdline": BASE_CMDLINE},
        "n": args.n,
        "kernels": {},
    }
    print(
        f"{'kernel':6} {'release':30} {'ready':>6} {'spread':>11} {'bare':>5} {'spread':>11} {'ratio':>5}  "
        f"{'cold':>5} {'ratio':>5} {'1st call':>8} {'usable':>6} {'ratio':>5} {'1st py':>6}"
    )
    for s, d in data.items():
        a, c, b = summary(d["ready"]), summary(d["cold"]), summary(d["bare"])
        ratio = round(float(a["median"]) / float(b["median"]), 2)
        cold_ratio = round(float(c["median"]) / float(b["median"]), 2)
        u = summary([r + c for r, c in zip(d["ready"], d["first_call"], strict=True)])
        usable_ratio = round(float(u["median"]) / float(b["median"]), 2)
        result["kernels"][s] = {
            "release": kernels[s].release,
            "ready_s": a,
            "cold_boot_ready_s": c,
            "bare_marker_s": b,
            "guest_uptime_at_cold_ready_s": summary(d["cold_uptime"]),
            "first_harness_call_s": summary(d["first_call"]),
            "first_python_exec_s": summary(d["first_python"]),
            "usable_s": u,
            "ratio": ratio,
            "cold_ratio": cold_ratio,
            "usable_ratio": usable_ratio,
        }
        print(
            f"{s:6} {kernels[s].release:30} {a['median']:6.2f} {a['min']:5.2f}-{a['max']:<5.2f} "
            f"{b['median']:5.2f} {b['min']:5.2f}-{b['max']:<5.2f} {ratio:5.2f}  {c['median']:5.2f} {cold_ratio:5.2f} "
            f"{statistics.median(d['first_call']):8.2f} {u['median']:6.2f} {usable_ratio:5.2f} "
            f"{statistics.median(d['first_python']):6.2f}"
        )
    print("ready = resumed from the boot snapshot (every VM after the first of its shape); target ready/bare <= 1.2")
    if args.out is None:
        args.out = Path("results") / "bench" / f"vm-boot-{time.strftime('%Y%m%d-%H%M%S')}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
