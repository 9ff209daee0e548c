#!/usr/bin/env python3
"""``oom-harness watch`` on a live host while 200 genuine OOM kills happen: all explained, memory flat.

* starts ``oom-harness watch --json`` on this host's ``/dev/kmsg`` (from now on: nothing of the
  ring buffer's past is read);
* runs ``oom-harness run single-hog --repeat N`` (default 200): N genuine memcg OOM kills, the
  engine pacing itself under the kernel's OOM-report ratelimit (10 reports per 5 s), so every
  report is printed in full;
* matches watch's events to the run's verdict rows by victim pid and memory cgroup, and prints:
  our OOMs seen and explained by watch (target: N of N; explained = watch's verdict is ``match``
  with a complete report and the same victim the harness recorded), gaps, other OOM events seen,
  watch's VmRSS at start (ready), after the first 10 events (warmed up) and at the end, its VmHWM,
  RSS samples over the run (min/max), its CPU time, and the wall time.

Needs root and a memory cgroup (like ``oom-harness run``).  The host's ring buffer is only read,
never flooded or cleared.  Prints a table and writes JSON (``--out``, default
``results/bench/watch-<timestamp>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _util import ROOT, Row, default_out, print_table, write_json

#: RSS growth from the warmed-up watch to the end that still counts as flat.
FLAT_KIB = 2048


def status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of *pid* in KiB, from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of *pid* (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:  # noqa: C901 - one linear procedure
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200, help="genuine OOM kills to provoke (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="JSON result (default: results/bench/watch-<timestamp>.json)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_watch: needs root (cgroups, /dev/kmsg)", file=sys.stderr)
        return 2
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    events: list[dict[str, Any]] = []
    samples: list[tuple[float, int]] = []
    marks: dict[str, dict[str, int]] = {}
    lock = threading.Lock()

    watch = subprocess.Popen([sys.executable, "-m", "harness", "watch", "--json"], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert watch.stdout is not None and watch.stderr is not None
    ready = watch.stderr.readline()
    if "watching" not in ready:
        watch.kill()
        print(f"bench_watch: watch did not start: {ready}{watch.stderr.read()}", file=sys.stderr)
        return 1
    time.sleep(0.5)
    marks["start"] = status_kib(watch.pid)

    def reader() -> None:
        for line in watch.stdout:  # type: ignore[union-attr]
            if line.strip():
                with lock:
                    events.append(json.loads(line))
                    if len(events) == 10:
                        marks["warm"] = status_kib(watch.pid)

    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(2.0):
            try:
                samples.append((time.monotonic(), status_kib(watch.pid)["VmRSS"]))
            except OSError:
                return

    threads = [threading.Thread(target=reader, daemon=True), threading.Thread(target=sampler, daemon=True)]
    for t in threads:
        t.start()
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        t0 = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "harness", "run", "single-hog", "--repeat", str(args.n),
                              "--results", tmp, "--format", "json"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60 * 30)
        wall = time.monotonic() - t0
        time.sleep(1.5)  # > watch's --settle: the last report is flushed
        marks["end"] = status_kib(watch.pid)
        watch_cpu = cpu_s(watch.pid)
        stop.set()
        watch.send_signal(signal.SIGTERM)
        try:
            _out, err = watch.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            watch.kill()
            err = "(watch did not exit within 30 s of SIGTERM)"
        threads[0].join(timeout=10)
        runs = [d for d in Path(tmp).iterdir() if (d / "verdicts.jsonl").is_file()]
        rows = [json.loads(ln) for d in runs for ln in (d / "verdicts.jsonl").read_text().splitlines() if ln.strip()]
    if run.returncode not in (0, 1) or not rows:
        print(f"bench_watch: the run failed (exit {run.returncode}): {run.stderr[-2000:]}", file=sys.stderr)
        return 1

    # our kills: (victim pid, memory cgroup) from the harness's own records
    ours = {}
    for r in rows:
        for k in r.get("kills") or []:
            if k.get("pid"):
                ours[k["pid"]] = r
    ooms = [e for e in events if e.get("type") == "oom"]
    gaps = [e for e in events if e.get("type") == "gap"]
    seen: dict[int, dict[str, Any]] = {}
    other = 0
    for e in ooms:
        pid = (e.get("observed_victim") or {}).get("pid")
        memcg = e.get("oom_memcg") or ""
        r = ours.get(pid)
        if r is not None and memcg and str(r.get("cgroup") or "").endswith(memcg):
            seen[pid] = e
        else:
            other += 1
    explained = [p for p, e in seen.items() if e.get("verdict") == "match" and e.get("complete")
                 and (e.get("observed_victim") or {}).get("name") == "hog"]
    as_expected = sum(1 for r in rows if r.get("as_expected") is True)
    rss = [s for _, s in samples]
    start, warm, end = marks["start"], marks.get("warm", marks["start"]), marks["end"]
    n = args.n
    res = [
        Row("scenario runs (single-hog), as expected", as_expected, f"of {len(rows)}", f"{n} of {n}",
            as_expected == n == len(rows)),
        Row("genuine OOM kills recorded by the run", len(ours), "kills", f">= {n}", len(ours) >= n),
        Row("our OOMs seen by watch (pid + cgroup)", len(seen), f"of {len(ours)}", "all", len(seen) == len(ours)),
        Row("our OOMs explained (match, complete, victim)", len(explained), f"of {len(ours)}", "all",
            len(explained) == len(ours)),
        Row("gaps reported", len(gaps), "gaps", "", None, "; ".join(g.get("reason", "") for g in gaps[:3])),
        Row("other OOM events seen (not ours)", other, "events", "", None),
        Row("watch VmRSS at start (ready)", start["VmRSS"] / 1024, "MiB", "", None),
        Row("watch VmRSS after its first 10 events", warm["VmRSS"] / 1024, "MiB", "", None),
        Row("watch VmRSS at the end", end["VmRSS"] / 1024, "MiB", "", None),
        Row("growth after warm-up (end - after 10 events)", (end["VmRSS"] - warm["VmRSS"]) / 1024, "MiB",
            f"<= {FLAT_KIB / 1024:.0f} MiB", end["VmRSS"] - warm["VmRSS"] <= FLAT_KIB),
        Row("watch VmHWM (peak)", end["VmHWM"] / 1024, "MiB", "", None,
            f"samples every 2 s: {min(rss) / 1024:.1f}-{max(rss) / 1024:.1f} MiB ({len(rss)})" if rss else ""),
        Row("watch CPU time", watch_cpu, "s", "", None),
        Row("wall time of the run", wall, "s", "", None, f"{n} OOMs, paced for the kernel's report ratelimit"),
    ]
    print_table(f"watch on {os.uname().release} during {n} genuine memcg OOM kills", res)
    print(f"watch said: {err.strip().splitlines()[-1] if err.strip() else '-'}")
    out = write_json(args.out or default_out("watch"), "watch", res, {"n": n},
                     {"kernel": os.uname().release, "rss_samples_kib": rss, "watch_stderr": err[-2000:]})
    print(f"saved {out}")
    return 0 if all(r.ok is not False for r in res) else 1


if __name__ == "__main__":
    sys.exit(main())
