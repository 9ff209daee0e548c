"""Kernel developer's loop benchmark: edit mm/oom_kill.c, rebuild, boot, verdicts.

Figures (2 cores, TCG):

* ``full build``: tinyconfig + vm/kconfig/oom-harness.config, ``make -j2 vmlinux`` from a clean
  build directory (``--full`` measures it now; otherwise the figure recorded by the tree's first
  build is reported);
* ``loop``: wall time from editing ``mm/oom_kill.c`` (a new constant appended, removed afterwards) to
  the verdicts of the host-capable catalogue run in a VM on the rebuilt kernel
  (``oom-harness run --kernel TREE <host scenarios>``), split into build and run; target <= 30 s;
* ``resumed / bare``: built-kernel VM start to agent ready, resumed from its boot snapshot, against
  a bare boot of the same kernel to a busybox /init; target <= 0.25x.

    python bench/bench_kbuild.py [--tree DIR | --series 6.12] [-n 3] [--full]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import Row, default_out, print_table, write_json  # noqa: E402
from bench.bench_vm_boot import agent_boot, bare_boot  # noqa: E402
from harness.backends.vm import GUEST_PRELOAD  # noqa: E402
from harness.machine.scenario import catalogue  # noqa: E402
from vm.image import build_initrd, minimal_initrd  # noqa: E402
from vm.kbuild import build_dir_for, build_tree  # noqa: E402
from vm.ksource import fetch_source  # noqa: E402
from vm.machine import GuestVM  # noqa: E402

#: The edit: new data in oom_kill.o (a comment alone would give the same vmlinux, same build-id, and
#: resume the old boot snapshot; a real edit changes code, so the loop pays the cold boot too).
EDIT = "\nconst volatile int oomh_bench_edit = {n};\n"


def host_scenarios() -> list[str]:
    """The host catalogue's scenarios that also run in the VM."""
    return [s.name for s in catalogue("vm") if "host" in s.backends]


def loop_once(tree: Path, scenarios: list[str], results: Path) -> dict[str, float | int | str]:
    """Edit oom_kill.c, then one ``oom-harness run --kernel TREE`` (build + boot + verdicts)."""
    src = tree / "mm" / "oom_kill.c"
    orig = src.read_text()
    t0 = time.monotonic()
    src.write_text(orig + EDIT.format(n=time.time_ns() % 1_000_000_007))
    try:
        p = subprocess.run([sys.executable, "-m", "harness", "run", "--kernel", str(tree), "--results", str(results),
                            "--json", *scenarios], capture_output=True, text=True, cwd=ROOT)
    finally:
        src.write_text(orig)
    wall = time.monotonic() - t0
    if p.returncode not in (0, 1):
        raise RuntimeError(f"run failed (rc {p.returncode}): {p.stderr.strip()[-400:]}")
    doc = json.loads(p.stdout[p.stdout.index("{"):])
    rows = doc["rows"]
    env = json.loads((Path(doc["results"]) / "env.json").read_text())
    build_s = float(env.get("kernel_build", {}).get("build_s", 0.0))
    ok = sum(1 for r in rows if r.get("as_expected") is True)
    bad = sum(1 for r in rows if r.get("as_expected") is False)
    return {"wall": wall, "build": build_s, "as_expected": ok, "not": bad, "scenarios": len(rows),
            "rc": p.returncode, "results": doc["results"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, help="kernel source tree (default: Debian's linux-source-SERIES)")
    ap.add_argument("--series", default="6.12")
    ap.add_argument("-n", type=int, default=3, help="loop repetitions")
    ap.add_argument("--full", action="store_true", help="measure the full first build now (deletes the build dir)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    tree = (args.tree or fetch_source(args.series)).resolve()
    bdir = build_dir_for(tree)
    first = bdir / "first-build.json"
    if args.full and bdir.exists():
        shutil.rmtree(bdir)
    build_tree(tree)  # warm: nothing (or the last edit's restore) to build; with --full, the first build
    full = json.loads(first.read_text()) if first.is_file() else {}  # written by the tree's first build
    scen = host_scenarios()
    results = ROOT / "results" / "bench" / "kbuild-runs"
    loops = []
    for i in range(args.n):
        loops.append(loop_once(tree, scen, results))
        print(f"loop {i + 1}: {loops[-1]}", file=sys.stderr, flush=True)
    kernel = build_tree(tree).kernel  # the tree as it was (each loop restores oom_kill.c)
    # start-to-ready of the built kernel: resumed from its snapshot vs a bare boot
    initrd = build_initrd(kernel)
    bare_initrd = minimal_initrd()
    with GuestVM(kernel, mem_mb=512, accel="tcg", initrd=initrd, preload=GUEST_PRELOAD):
        pass  # primes the boot snapshot of this build (a no-op when the runner saved it already)
    resumed, bare = [], []
    for _ in range(args.n):
        resumed.append(agent_boot(kernel, initrd, 512, snapshot=True)[0])
        bare.append(bare_boot(kernel, bare_initrd, 512))
    r_med, b_med = statistics.median(resumed), statistics.median(bare)
    walls = [float(x["wall"]) for x in loops]
    rows = [
        Row("full first build (tinyconfig + fragment, -j2)", full.get("build_s"), "s", "",
            None, f"{full.get('steps', '?')} steps; config {full.get('config_s', 0):.1f}s"),
        Row("loop: edit oom_kill.c -> verdicts, median", statistics.median(walls), "s", "<= 30 s",
            statistics.median(walls) <= 30, f"{len(scen)} scenarios; runs {', '.join(f'{w:.1f}' for w in walls)}"),
        Row("... of which incremental build", statistics.median([float(x["build"]) for x in loops]), "s", "", None,
            f"as expected {loops[-1]['as_expected']}/{loops[-1]['scenarios']}"),
        Row("built-kernel VM start to ready, resumed", r_med, "s", "", None, f"{kernel.release}"),
        Row("... bare boot to busybox /init", b_med, "s", "", None, ""),
        Row("resumed / bare", r_med / b_med, "x", "<= 0.25x", r_med / b_med <= 0.25, ""),
    ]
    print_table(f"kernel build loop: {tree} ({kernel.release}, build-id {kernel.build_id})", rows)
    out = args.out or default_out("kbuild")
    write_json(out, "kbuild", rows, {"tree": str(tree), "n": args.n, "scenarios": scen},
               {"loops": loops, "resumed": resumed, "bare": bare, "full": full})
    print(f"\nsaved {out}")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
