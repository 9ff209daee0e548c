#!/usr/bin/env python3
"""Host-runner benchmark: how long a genuine memcg OOM takes end to end, and what the harness adds.

* harness: ``run_scenario(single-hog)`` (64 MiB limit) N times; median and spread of the total
  and of each phase (setup, fill, kill detection, log collection, parse + model);
* baseline: the bare physical work - a raw cgroup with the same limit and a bare hog
  (``python3 -I -S`` + mmap/memset until killed) run with fork/exec/waitpid, no harness;
* the ratio harness / baseline (target <= 1.5x) and the absolute median (target <= 0.5 s);
* the whole host catalogue's wall time (target <= 20 s), including the pauses the harness makes
  to stay inside the kernel's OOM-report ratelimit (10 reports per 5 s).

Prints a table and writes JSON (``--out``, default ``results/bench/host-<timestamp>.json``).
Needs root and a memory cgroup.  Runs are paced like the harness paces itself, so the kernel's
ratelimit never suppresses a report mid-benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.machine.engine import EngineOptions, _hog_python, run_scenario, warm_up  # noqa: E402
from harness.machine.sandbox import detect_layout  # noqa: E402
from harness.machine.scenario import catalogue, resolve  # noqa: E402

BARE_HOG = (
    "import mmap,ctypes\n"
    "libc=ctypes.CDLL(None)\n"
    "ms=[]\n"
    "while True:\n"
    "    m=mmap.mmap(-1,4<<20,flags=mmap.MAP_PRIVATE|mmap.MAP_ANONYMOUS)\n"
    "    libc.memset(ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(m))),1,4<<20)\n"
    "    ms.append(m)\n"
)


def _w(path: str, value: int) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def bare_once(limit: int = 64 << 20) -> float:
    """A raw cgroup, a bare hog that fills it until the kernel kills it, the cgroup removed."""
    lay = detect_layout()
    path = os.path.join(lay.own_dir, f"oomh-bench-{os.getpid()}")
    t0 = time.perf_counter()
    os.mkdir(path)
    try:
        if lay.version == 2:
            _w(os.path.join(path, "memory.max"), limit)
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                _w(os.path.join(path, "memory.swap.max"), 0)
        else:
            _w(os.path.join(path, "memory.limit_in_bytes"), limit)
            _w(os.path.join(path, "memory.memsw.limit_in_bytes"), limit)
        procs = os.path.join(path, "cgroup.procs")

        def join() -> None:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

        p = subprocess.Popen([_hog_python(), "-I", "-S", "-c", BARE_HOG], preexec_fn=join,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rc = p.wait()
        assert rc == -9, f"bare hog exited {rc}, expected an OOM kill"
    finally:
        for _ in range(200):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.005)
    return time.perf_counter() - t0


def pace(i: int) -> None:
    if i and i % 8 == 0:
        time.sleep(5.3)  # the kernel prints at most 10 OOM reports per 5 s


def stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1],
            "p90": xs[int(0.9 * (len(xs) - 1))], "n": len(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="n=5 and skip the catalogue")
    ap.add_argument("--out")
    args = ap.parse_args()
    n = 5 if args.quick else args.n
    if os.geteuid() != 0:
        print("bench_host: needs root", file=sys.stderr)
        return 2
    warm_up()
    sc = resolve(["single-hog"], "host")[0]
    bare, totals = [], []
    phases: dict[str, list[float]] = {}
    k = 0
    for _ in range(n):  # interleave so slow stretches of the host hit both alike
        pace(k)
        k += 1
        bare.append(bare_once())
        pace(k)
        k += 1
        t0 = time.perf_counter()
        rec = run_scenario(sc, EngineOptions()).to_dict()
        totals.append(time.perf_counter() - t0)
        assert rec["as_expected"], rec["reason"]
        for ph, v in rec["timings"].items():
            phases.setdefault(ph, []).append(v)
    res: dict = {"bare": stats(bare), "harness": stats(totals), "phases": {p: stats(v) for p, v in phases.items()}}
    res["ratio"] = res["harness"]["median"] / res["bare"]["median"]
    if not args.quick:
        time.sleep(5.3)
        t0 = time.perf_counter()
        recs = [run_scenario(s, EngineOptions()).to_dict() for s in catalogue("host")]
        res["catalogue"] = {"wall_s": time.perf_counter() - t0, "scenarios": len(recs),
                            "as_expected": sum(1 for r in recs if r["as_expected"] is True),
                            "skipped": sum(1 for r in recs if r["as_expected"] is None)}
    rows = [
        ("single-hog end to end (median)", f"{res['harness']['median'] * 1000:.0f} ms", "<= 500 ms",
         res["harness"]["median"] <= 0.5),
        ("  spread (min..p90..max)", f"{res['harness']['min'] * 1000:.0f}..{res['harness']['p90'] * 1000:.0f}.."
         f"{res['harness']['max'] * 1000:.0f} ms", "", None),
        ("bare hog in a raw cgroup (median)", f"{res['bare']['median'] * 1000:.0f} ms", "baseline", None),
        ("harness / bare", f"{res['ratio']:.2f}x", "<= 1.5x", res["ratio"] <= 1.5),
    ]
    for ph in ("setup", "fill", "kill", "log", "parse_model"):
        if ph in res["phases"]:
            rows.append((f"  phase {ph} (median)", f"{res['phases'][ph]['median'] * 1000:.1f} ms", "", None))
    if "catalogue" in res:
        c = res["catalogue"]
        rows.append((f"host catalogue ({c['scenarios']} scenarios, {c['skipped']} skipped)", f"{c['wall_s']:.1f} s",
                     "<= 20 s", c["wall_s"] <= 20 and c["as_expected"] + c["skipped"] == c["scenarios"]))
    w = max(len(r[0]) for r in rows)
    print(f"{'figure':<{w}}  {'value':>20}  {'target':>10}  result")
    for name, val, target, ok in rows:
        print(f"{name:<{w}}  {val:>20}  {target:>10}  {'' if ok is None else ('PASS' if ok else 'FAIL')}")
    out = args.out or os.path.join("results", "bench", f"host-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"kernel": os.uname().release, "n": n, **res}, f, indent=1)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
