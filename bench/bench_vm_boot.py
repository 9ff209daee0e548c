"""Boot-time benchmark: QEMU start -> agent ready, against a bare boot of the same kernel.

For each kernel, N round-robin repetitions of:

* ``agent``: ``GuestVM`` start until the agent's ready frame (the number a scenario pays per boot),
  plus the time of a first ``python3 -c 'import json, psutil'`` in the guest (``first_python``);
* ``bare``: the same QEMU recipe with a busybox-only initramfs whose /init prints a marker on the
  serial console (the floor: kernel boot alone).

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


def agent_boot(kernel: Kernel, initrd: Path, mem_mb: int) -> tuple[float, float, float]:
    """``(boot_seconds, guest uptime at ready, first python exec seconds)`` of one GuestVM."""
    with GuestVM(kernel, mem_mb=mem_mb, accel="tcg", initrd=initrd) as vm:
        assert vm.boot_seconds is not None
        t = time.monotonic()
        r = vm.exec(["python3", "-c", "import json, psutil; print(1)"], 60)
        first = time.monotonic() - t
        if not r.ok:
            raise RuntimeError(f"python in guest failed: {r.stderr}")
        return vm.boot_seconds, float(vm.ready_info.get("uptime", 0)), first


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
        s: {"agent": [], "uptime": [], "first_python": [], "bare": []} for s in kernels
    }
    for i in range(args.n):
        for s, k in kernels.items():
            b, up, first = agent_boot(k, initrds[s], args.mem)
            data[s]["agent"].append(b)
            data[s]["uptime"].append(up)
            data[s]["first_python"].append(first)
            data[s]["bare"].append(bare_boot(k, bare, args.mem))
            print(
                f"[{i + 1}/{args.n}] {s:5} agent {b:.2f}s  bare {data[s]['bare'][-1]:.2f}s  first python {first:.2f}s",
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
        f"{'kernel':6} {'release':30} {'agent med':>9} {'spread':>13} {'bare med':>8} {'spread':>13} "
        f"{'ratio':>5} {'1st py':>6}"
    )
    for s, d in data.items():
        a, b = summary(d["agent"]), summary(d["bare"])
        ratio = round(float(a["median"]) / float(b["median"]), 2)
        result["kernels"][s] = {
            "release": kernels[s].release,
            "agent_ready_s": a,
            "bare_marker_s": b,
            "guest_uptime_at_ready_s": summary(d["uptime"]),
            "first_python_exec_s": summary(d["first_python"]),
            "ratio": ratio,
        }
        print(
            f"{s:6} {kernels[s].release:30} {a['median']:9.2f} {a['min']:6.2f}-{a['max']:<6.2f} "
            f"{b['median']:8.2f} {b['min']:6.2f}-{b['max']:<6.2f} {ratio:5.2f} "
            f"{statistics.median(d['first_python']):6.2f}"
        )
    if args.out is None:
        args.out = Path("results") / "bench" / f"vm-boot-{time.strftime('%Y%m%d-%H%M%S')}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
